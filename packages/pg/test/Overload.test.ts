import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Fiber, Option } from "effect"
import { PgPool } from "../src/index.js"
import { options, serverSessions, suiteUrl, waitFor } from "./utils.js"

// Overload shedding and live reconfiguration end to end: statements on a real PostgreSQL server through PgPool.
describe("PgPool: overload shedding and reconfigure on PostgreSQL", () => {
  it.live("past maxWaiting a statement fails at once with PoolOverloaded; reconfigure lifts the limit live", () => {
    const opts = options(suiteUrl(), { maxSize: 2, maxWaiting: 1, acquireTimeout: "10 seconds" })
    return Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const slow = sql`SELECT pg_sleep(0.4)`
      const busy = yield* Effect.fork(Effect.all([slow, slow], { concurrency: "unbounded" }))
      yield* waitFor(PgPool.PgPool.stats, (s) => s.inUse === 2)
      const queued = yield* Effect.fork(sql<{ n: number }>`SELECT 1 AS n`)
      yield* waitFor(PgPool.PgPool.stats, (s) => s.waiting === 1)

      // the next statement is refused without waiting: an SqlError whose cause is the pool's PoolOverloaded
      const error = yield* Effect.flip(sql`SELECT 2`)
      assert.isTrue(Option.isNone(yield* Fiber.poll(busy)), "refused while the sleeps still run")
      assert.strictEqual((error.cause as { _tag: string })._tag, "PoolOverloaded")
      assert.match(error.message, /pool "postgres" is overloaded: 1 callers waiting, the limit \(maxWaiting\) is 1/)
      // and through the pool's own API, the typed error itself
      const direct = yield* Effect.flip(PgPool.PgPool.withConnection(() => Effect.void))
      assert.strictEqual(direct._tag, "PoolOverloaded")

      yield* Fiber.join(busy)
      assert.deepStrictEqual(yield* Fiber.join(queued), [{ n: 1 }]) // the admitted caller was served
      assert.strictEqual((yield* PgPool.PgPool.stats).overloadFailures, 2)

      // live: four connections, no queue limit; four sleeps now run side by side on four server sessions
      yield* PgPool.PgPool.reconfigure({ maxSize: 4, maxWaiting: Infinity })
      const four = yield* Effect.fork(Effect.all([slow, slow, slow, slow], { concurrency: "unbounded" }))
      yield* waitFor(serverSessions(suiteUrl(), opts.applicationName), (n) => n === 4)
      yield* Fiber.join(four)
      const s = yield* PgPool.PgPool.stats
      assert.deepStrictEqual([s.maxSize, s.total, s.overloadFailures], [4, 4, 2])
    }).pipe(Effect.provide(PgPool.layer(opts)))
  })
})
