import { Context, Effect } from "effect"
import { type ConnectionPool, MultiPool, PoolError } from "@connection-pool/core"

// A stand-in client per server; "db2" is down, so its connects fail.
interface Conn {
  readonly server: string
  readonly query: (sql: string) => Effect.Effect<string>
}

const driver = (server: string): ConnectionPool.Driver<Conn> => ({
  connect: server === "db2"
    ? Effect.fail(new PoolError.ConnectionError({ reason: `could not connect to ${server}: connection refused` }))
    : Effect.succeed({ server, query: (sql) => Effect.succeed(`${server} ran ${sql}`) }),
  close: () => Effect.void
})

class Db extends Context.Tag("app/Db")<Db, MultiPool.MultiPool<Conn>>() {}

const DbLive = MultiPool.layer(Db, {
  servers: ["db1", "db2", "db3"].map((name) => ({ name, driver: driver(name) })),
  maxSizePerServer: 5,
  selection: "round-robin", // or "random", "least-in-use", or (servers) => servers[0].index
  banAfter: 1, // one failed connect bans a server for banTime; a background probe lifts the ban
  banTime: "10 seconds",
  acquireTimeout: "5 seconds" // one deadline for the caller, failovers included
})

export const main = Effect.gen(function*() {
  const db = yield* Db
  const ran: Array<string> = []
  // the second borrow picks db2, fails to connect, and moves on to db3 within the same deadline
  for (let i = 0; i < 4; i++) ran.push(yield* db.withConnection((conn) => conn.query("SELECT 1")))
  const stats = yield* db.stats
  return `${ran.join(", ")}; healthy: ${stats.healthyServers}/${stats.servers}`
}).pipe(Effect.provide(DbLive))

if (import.meta.url === `file://${process.argv[1]}`) Effect.runPromise(main).then(console.log)
