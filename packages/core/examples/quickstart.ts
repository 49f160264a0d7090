import { Effect } from "effect"
import { ConnectionPool as Pool, PoolError } from "@connection-pool/core"

// 1. Your connection type, and how to open, close and check one (here: a stand-in for a database client).
interface Conn {
  readonly id: number
  readonly query: (sql: string) => Effect.Effect<string>
}

let opened = 0
const driver: Pool.Driver<Conn> = {
  connect: Effect.sync(() => {
    const id = ++opened
    return { id, query: (sql) => Effect.succeed(`connection ${id} ran ${sql}`) }
  }),
  close: (_conn) => Effect.void,
  validate: (conn) => Effect.as(conn.query("SELECT 1"), true)
}

// 2. The pool as a service: declare its tag once, build it as a layer.
class ConnectionPool extends Pool.Tag("app/ConnectionPool")<ConnectionPool, Conn>() {}

const PoolLive = ConnectionPool.layer({ driver, maxSize: 10, acquireTimeout: "5 seconds" })

// 3. Borrow a connection inside your program: it goes back to the pool when the callback ends.
const program = Effect.gen(function*() {
  const rows = yield* ConnectionPool.withConnection((conn) => conn.query("SELECT now()"))
  const stats = yield* ConnectionPool.stats
  return `${rows} (${stats.total} open, ${stats.acquired} borrowed)`
})

// Every failure is typed: PoolTimeout, PoolEmpty, PoolClosed, ConnectionError (or InvalidConfig from the layer).
export const main = program.pipe(
  Effect.provide(PoolLive),
  Effect.catchTag("PoolTimeout", (e: PoolError.PoolTimeout) => Effect.succeed(`busy: ${e.message}`))
)

if (import.meta.url === `file://${process.argv[1]}`) Effect.runPromise(main).then(console.log)
