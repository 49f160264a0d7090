import { Config, Effect, Schedule } from "effect"
import { ConnectionPool as Pool, OptionCheck, PoolError } from "@connection-pool/core"

interface Conn {
  readonly id: number
}
let opened = 0
const driver: Pool.Driver<Conn> = { connect: Effect.sync(() => ({ id: ++opened })), close: () => Effect.void }

class Db extends Pool.Tag("app/Db")<Db, Conn>() {}

// Sizes, timeouts and the overload limit from the environment, read again every 30 seconds and applied live
// (connections in use are never dropped). A bad value, say DB_MAX_SIZE=0, is logged and the pool keeps its config.
export const DbLive = Db.layerConfig(driver, {
  name: Config.succeed("orders"),
  maxSize: Config.withDefault(Config.integer("DB_MAX_SIZE"), 10),
  acquireTimeout: Config.withDefault(OptionCheck.durationConfig("DB_ACQUIRE_TIMEOUT"), "5 seconds"),
  // past 100 queued callers, or when the queue would outlast a caller's acquireTimeout: PoolOverloaded at once
  maxWaiting: Config.withDefault(Config.integer("DB_MAX_WAITING"), 100),
  shedOnExpectedWait: Config.succeed(true)
}, { reload: Schedule.spaced("30 seconds") })

// A shed caller can answer "busy" (HTTP 503) at once, instead of queueing only to time out.
export const handle = (request: number) =>
  Db.withConnection((conn) => Effect.succeed(`request ${request} on connection ${conn.id}`)).pipe(
    Effect.catchTag("PoolOverloaded", (e: PoolError.PoolOverloaded) => Effect.succeed(`busy: ${e.message}`))
  )

// Or from code (an admin endpoint, a feature flag): checked like `make`'s options, InvalidConfig if bad.
export const surge = Db.reconfigure({ maxSize: 50, acquireTimeout: "2 seconds" })

export const main = Effect.gen(function*() {
  const first = yield* handle(1)
  yield* surge
  const stats = yield* Db.stats
  return `${first}; maxSize ${stats.maxSize}, ${stats.overloadFailures} shed`
}).pipe(Effect.provide(DbLive))
