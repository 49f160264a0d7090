import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Cause, Deferred, Effect, Exit, Fiber, HashMap, Layer, Logger, Ref, TestClock } from "effect"
import { PgPool } from "../src/index.js"
import { admin, options, suiteUrl } from "./utils.js"

// The core's nested-acquire handling and leak detection, end to end on PostgreSQL: a statement (or a transaction)
// run inside `PgPool.withConnection` runs on the connection the fiber holds, and a raw borrow inside
// `sql.withTransaction` gets the transaction's session.

type Services = PgPool.PgPool | SqlClient.SqlClient

const pid = (client: import("pg").Client) =>
  Effect.map(PgPool.query<{ pid: number }>(client, "SELECT pg_backend_pid() AS pid"), (r) => r.rows[0].pid)

/** `n` fibers that each hold a raw connection until all `n` do, then run a `sql` statement inside it. */
const everyoneNests = (n: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const holding = yield* Ref.make(0)
    const go = yield* Deferred.make<void>()
    const fibers = yield* Effect.forEach(Array.from({ length: n }), () =>
      PgPool.withConnection((client) =>
        Effect.gen(function*() {
          yield* Ref.update(holding, (k) => k + 1)
          yield* Deferred.await(go)
          const inner = yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`
          return [yield* pid(client), inner[0].pid] as const
        })
      ).pipe(Effect.fork))
    while ((yield* Ref.get(holding)) < n) yield* Effect.sleep("5 millis")
    yield* Deferred.succeed(go, undefined)
    return yield* Effect.forEach(fibers, Fiber.await)
  })

const run = <A, E>(effect: Effect.Effect<A, E, Services>, extra = {}) =>
  Effect.provide(effect, PgPool.layer(options(suiteUrl(), { maxSize: 4, ...extra })))

describe("PgPool: nested acquire and leak detection", () => {
  it.live("maxSize 4, 4 fibers each running a statement inside PgPool.withConnection: it runs on their session", () =>
    run(Effect.gen(function*() {
      const exits = yield* everyoneNests(4)
      for (const exit of exits) {
        assert.isTrue(Exit.isSuccess(exit), Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "")
        const [raw, statement] = (exit as Exit.Success<readonly [number, number], never>).value
        assert.strictEqual(statement, raw)
      }
      const stats = yield* PgPool.PgPool.stats
      assert.deepStrictEqual([stats.timeouts, stats.inUse, stats.waiting], [0, 0, 0])
    })))

  it.live("the same with nested: \"allow\" deadlocks until acquireTimeout breaks it with PoolTimeout", () =>
    run(
      Effect.gen(function*() {
        const start = Date.now()
        const exits = yield* everyoneNests(4)
        // nobody got anywhere until the first deadline; then a caller that timed out freed its connection for
        // another (real deadlines are a few ms apart, so not every one of them times out)
        assert.isAtLeast(Date.now() - start, 450)
        const failed = exits.filter(Exit.isFailure)
        assert.isAtLeast(failed.length, 1)
        for (const exit of failed) {
          const error = Cause.squash(exit.cause) as SqlError
          assert.strictEqual(error._tag, "SqlError")
          assert.strictEqual((error.cause as { _tag?: string })._tag, "PoolTimeout")
        }
      }),
      { nested: "allow", acquireTimeout: "500 millis" }
    ))

  it.live("inside sql.withTransaction, PgPool.withConnection gets the transaction's session and sees its writes", () =>
    run(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const table = `t_nested_${Date.now()}_${Math.floor(Math.random() * 1e6)}`
      yield* sql`CREATE TABLE ${sql(table)} (x int)`
      const [txPid, rawPid, seen, outside] = yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO ${sql(table)} VALUES (1)`
        const txPid = (yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`)[0].pid
        return yield* PgPool.withConnection((client) =>
          Effect.gen(function*() {
            const seen = yield* PgPool.query<{ n: string }>(client, `SELECT count(*) AS n FROM ${table}`)
            const outside = yield* admin<{ n: string }>(suiteUrl(), `SELECT count(*) AS n FROM ${table}`)
            return [txPid, yield* pid(client), Number(seen.rows[0].n), Number(outside[0].n)] as const
          })
        )
      }))
      assert.strictEqual(rawPid, txPid)
      assert.strictEqual(seen, 1) // the uncommitted row: the same transaction
      assert.strictEqual(outside, 0)
      assert.strictEqual(yield* Effect.map(sql<{ n: string }>`SELECT count(*) AS n FROM ${sql(table)}`, (r) => Number(r[0].n)), 1)
      // and the other way round: a transaction inside a raw borrow runs on that borrow's session
      const [outer, inTx] = yield* PgPool.withConnection((client) =>
        Effect.zip(pid(client), sql.withTransaction(sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`))
      )
      assert.strictEqual(inTx[0].pid, outer)
    })))

  it.scoped("a connection held past leakDetectionThreshold logs a warning (TestClock), and its return an info line", () =>
    Effect.gen(function*() {
      const lines: Array<{ level: string; message: string; annotations: Record<string, unknown> }> = []
      const logger = Logger.make(({ annotations, logLevel, message }) => {
        lines.push({
          level: logLevel.label,
          message: Array.isArray(message) ? message.join(" ") : String(message),
          annotations: Object.fromEntries(HashMap.toEntries(annotations))
        })
      })
      const layer = PgPool.layer(options(suiteUrl(), { name: "pg-leaks", leakDetectionThreshold: "10 seconds" }))
      const logs = Logger.replace(Logger.defaultLogger, logger)
      const context = yield* Layer.build(layer).pipe(Effect.provide(logs))
      const release = yield* Deferred.make<void>()
      const held = yield* Deferred.make<number>()
      const fiber = yield* PgPool.withConnection((client) =>
        Effect.zipRight(Effect.flatMap(pid(client), (p) => Deferred.succeed(held, p)), Deferred.await(release))
      ).pipe(Effect.withSpan("report"), Effect.provide(context), Effect.provide(logs), Effect.fork)
      const backend = yield* Deferred.await(held)
      yield* TestClock.adjust("10 seconds")
      const warning = yield* Effect.repeat(
        Effect.zipRight(Effect.yieldNow(), Effect.sync(() => lines.find((l) => l.level === "WARN"))),
        { until: (l) => l !== undefined, times: 1000 }
      )
      assert.isDefined(warning)
      assert.match(warning!.message, /^connection leak suspected: pool "pg-leaks" lent a connection to fiber #\d+ in span "report" 10s ago/)
      assert.strictEqual(warning!.annotations.span, "report")
      const stats = yield* Effect.provide(PgPool.PgPool.stats, context)
      assert.deepStrictEqual([stats.leaksSuspected, stats.leaked], [1, 1])
      // not closed for it: the session is still there
      const sessions = yield* admin<{ n: string }>(suiteUrl(), "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1", [backend])
      assert.strictEqual(Number(sessions[0].n), 1)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(fiber)
      assert.isDefined(lines.find((l) => l.level === "INFO" && l.message.startsWith("previously reported leaked connection of pool \"pg-leaks\"")))
      assert.strictEqual((yield* Effect.provide(PgPool.PgPool.stats, context)).leaked, 0)
    }))
})
