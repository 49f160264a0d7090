import { Effect } from "effect"
import { ConnectionPool as Pool } from "@connection-pool/core"

// A stand-in client that records what it was asked to run.
interface Conn {
  readonly id: number
  readonly ran: Array<string>
}
let opened = 0
const driver: Pool.Driver<Conn> = {
  connect: Effect.sync(() => ({ id: ++opened, ran: [] })),
  close: (_conn) => Effect.void
}

class Db extends Pool.Tag("app/Db")<Db, Conn>() {}

// Two connections; a warning for any borrow held past 30 seconds; `nested` left at its default, "reuse".
export const DbLive = Db.layer({ name: "orders", driver, maxSize: 2, leakDetectionThreshold: "30 seconds" })

// A repository function that borrows on its own...
const insertLine = (order: number) =>
  Db.withConnection((conn) => Effect.sync(() => conn.ran.push(`INSERT line of ${order}`)))

// ...called inside a borrow gets the connection its fiber holds, so the transaction begun on it covers the insert.
// Ten of these at once on a pool of two all complete. With `nested: "allow"` every fiber would hold one connection
// and wait for a second, and all would end in PoolTimeout; with `nested: "fail"` the inner borrow fails at once
// with a NestedAcquire error.
export const placeOrder = (order: number) =>
  Db.withConnection((conn) =>
    Effect.gen(function*() {
      conn.ran.push(`BEGIN ${order}`)
      yield* insertLine(order)
      conn.ran.push(`COMMIT ${order}`)
      return conn
    })
  )

export const main = Effect.forEach([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], placeOrder, { concurrency: "unbounded" }).pipe(
  Effect.zip(Db.stats),
  Effect.provide(DbLive)
)

if (import.meta.url === `file://${process.argv[1]}`) {
  Effect.runPromise(main).then(([, stats]) => console.log(`${stats.acquired} borrows, ${stats.created} connections`))
}
