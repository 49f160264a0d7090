import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Cause, Deferred, type Duration, Effect, Exit, Fiber, Ref } from "effect"
import { afterAll, beforeAll } from "vitest"
import { PgPool } from "../src/index.js"
import { type PgCluster, startCluster } from "./harness/PgCluster.js"
import { admin, io, options, sessionsMatchPool, waitFor } from "./utils.js"

// Load trials on a cluster of their own: backends killed every 2 s under 100 fibers, a restart under load, and
// 200 sleeping queries interrupted at once. Each prints its figures (the README's fault table quotes them).

let cluster: PgCluster
beforeAll(async () => {
  cluster = await startCluster({ name: "load", settings: { max_connections: "260" }, pgbouncer: true })
})
afterAll(() => cluster?.destroy())

interface Tally {
  ok: number
  failed: number
  /** Failures that are not a lost session: must stay 0. */
  other: Array<string>
  /** When (ms since the epoch) each failed call started. */
  failedAt: Array<number>
}

const tally = () => Ref.make<Tally>({ ok: 0, failed: 0, other: [], failedAt: [] })

/** A typed SqlError for a lost session (its cause is connection-class). */
const lostSession = (error: SqlError) => PgPool.isConnectionFailure(error.cause)

/** ... or for a server that is away: the pool could not connect, or not within acquireTimeout. */
const serverAway = (error: SqlError) =>
  lostSession(error) || ["ConnectionError", "PoolTimeout"].includes((error.cause as { _tag?: string })?._tag ?? "")

/** Records one call's exit: a success, an expected typed failure, or something else. */
const record = (
  ref: Ref.Ref<Tally>,
  expected: (error: SqlError) => boolean,
  started: number,
  exit: Exit.Exit<unknown, SqlError>
) =>
  Ref.update(ref, (t) => {
    if (Exit.isSuccess(exit)) return { ...t, ok: t.ok + 1 }
    const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
    const lost = failure?._tag === "SqlError" && expected(failure)
    return {
      ...t,
      failed: t.failed + 1,
      failedAt: [...t.failedAt, started],
      other: lost ? t.other : [...t.other, failure?.message ?? Cause.pretty(exit.cause)]
    }
  })

/** `n` fibers running `statement` back to back until `stop` completes. */
const load = <E>(
  n: number,
  statement: Effect.Effect<unknown, SqlError, E>,
  ref: Ref.Ref<Tally>,
  expected: (error: SqlError) => boolean,
  stop: Deferred.Deferred<void>,
  pauseOnFailure: Duration.DurationInput = 0
) => {
  const worker = Effect.gen(function*() {
    while (!(yield* Deferred.isDone(stop))) {
      const started = Date.now()
      const exit = yield* Effect.exit(statement)
      yield* record(ref, expected, started, exit)
      if (Exit.isFailure(exit)) yield* Effect.sleep(pauseOnFailure)
    }
  })
  return Effect.fork(Effect.all(Array.from({ length: n }, () => worker), { concurrency: "unbounded", discard: true }))
}

describe("load trials", () => {
  for (const via of ["direct", "pgbouncer"] as const) {
    it.live(`backends killed every 2 s under 100 fibers (${via}): only the statements in flight on them fail`, () =>
      Effect.gen(function*() {
        const opts = options(via === "direct" ? cluster.url : cluster.pgbouncer!.url, { maxSize: 10 })
        // ours by application name; through PgBouncer, every server session it holds
        const ours = via === "direct"
          ? "application_name = $1"
          : "backend_type = 'client backend' AND pid <> pg_backend_pid() AND $1::text IS NOT NULL"
        yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const outcomes = yield* tally()
          const stop = yield* Deferred.make<void>()
          const started = Date.now()
          const workers = yield* load(100, sql`SELECT pg_sleep(0.01)`, outcomes, lostSession, stop)
          let killed = 0
          let active = 0
          for (let round = 0; round < 4; round++) {
            yield* Effect.sleep("2 seconds")
            const rows = yield* admin<{ n: string; active: string }>(
              cluster.url,
              "SELECT count(pg_terminate_backend(pid)) AS n, count(*) FILTER (WHERE state = 'active') AS active " +
                `FROM pg_stat_activity WHERE ${ours}`,
              [opts.applicationName]
            )
            killed += Number(rows[0].n)
            active += Number(rows[0].active)
          }
          yield* Effect.sleep("1 second")
          yield* Deferred.succeed(stop, undefined)
          yield* Fiber.join(workers).pipe(Effect.timeout("30 seconds"))
          const t = yield* Ref.get(outcomes)
          const seconds = (Date.now() - started) / 1000
          console.log(
            `kills every 2 s (${via}), 100 fibers, maxSize 10: ${t.ok} ok (${Math.round(t.ok / seconds)}/s), ` +
              `${t.failed} failed, ${killed} backends killed in 4 rounds (${active} of them running a statement)`
          )
          assert.deepStrictEqual(t.other, [])
          assert.isAbove(killed, 0)
          // each killed backend had at most one statement in flight: nothing else may fail
          assert.isAtMost(t.failed, killed)
          const stats = yield* PgPool.PgPool.stats
          assert.deepStrictEqual([stats.inUse, stats.waiting, stats.pending], [0, 0, 0])
          if (via === "direct") yield* sessionsMatchPool(cluster.url, opts.applicationName)
        }).pipe(Effect.provide(PgPool.layer(opts)))
      }), 60_000)
  }

  it.live("restart under load: calls fail only while the server is away, then all succeed", () =>
    Effect.gen(function*() {
      const opts = options(cluster.url, {
        maxSize: 10,
        acquireTimeout: "2 seconds",
        connectTimeout: "1 second",
        connectBackoffMax: "200 millis"
      })
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const outcomes = yield* tally()
        const stop = yield* Deferred.make<void>()
        const slowest = yield* Ref.make(0)
        const timed = Effect.gen(function*() {
          const started = Date.now()
          yield* Effect.ensuring(
            sql`SELECT pg_sleep(0.002)`,
            Ref.update(slowest, (s) => Math.max(s, Date.now() - started))
          )
        })
        const workers = yield* load(100, timed, outcomes, serverAway, stop, "20 millis")
        yield* Effect.sleep("1 second")
        const down = Date.now()
        yield* io(() => cluster.restart("fast"))
        const up = Date.now()
        // when the first call succeeded (not when this line was built: `Effect.as(Date.now())` would be that)
        const first = yield* waitFor(Effect.exit(sql`SELECT 1`), Exit.isSuccess, 5).pipe(Effect.map(() => Date.now()))
        yield* Effect.sleep("2 seconds")
        yield* Deferred.succeed(stop, undefined)
        yield* Fiber.join(workers).pipe(Effect.timeout("30 seconds"))
        const t = yield* Ref.get(outcomes)
        const late = t.failedAt.filter((at) => at > first)
        console.log(
          `restart (fast) under 100 fibers: server away ${up - down} ms, serving ${first - up} ms after it was back; ` +
            `${t.ok} ok, ${t.failed} failed, ${late.length} failed that started after recovery; ` +
            `slowest call ${yield* Ref.get(slowest)} ms`
        )
        assert.deepStrictEqual(t.other, [], "every failure is a typed SqlError: a lost session or a server away")
        assert.isBelow(first - up, 2000)
        assert.deepStrictEqual(late, [], "a call that started after the recovery failed")
        assert.isAbove(t.failed, 0)
        assert.isBelow(yield* Ref.get(slowest), 4000) // acquireTimeout plus a connect, no hang
        yield* waitFor(PgPool.PgPool.stats, (s) => s.inUse === 0 && s.waiting === 0 && s.pending === 0)
        yield* sessionsMatchPool(cluster.url, opts.applicationName)
      }).pipe(Effect.provide(PgPool.layer(opts)))
    }), 60_000)

  it.live("200 sleeping queries interrupted at once: none left on the server within 2 s, nothing leaked", () =>
    Effect.gen(function*() {
      const opts = options(cluster.url, { maxSize: 200, acquireTimeout: "20 seconds", connectTimeout: "10 seconds" })
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const active =
          "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query LIKE '%pg_sleep(60)%'"
        const sleeping = admin<{ n: string }>(cluster.url, active, [opts.applicationName])
        // 150 plain statements and 50 in transactions (a pinned connection)
        const fibers = yield* Effect.forEach(
          Array.from({ length: 200 }, (_, i) => i),
          (i) => Effect.fork(i < 150 ? sql`SELECT pg_sleep(60)` : sql.withTransaction(sql`SELECT pg_sleep(60)`))
        )
        yield* waitFor(sleeping, (r) => Number(r[0].n) === 200, 30)
        const started = Date.now()
        const interrupting = yield* Effect.fork(Fiber.interruptAll(fibers))
        yield* waitFor(sleeping, (r) => Number(r[0].n) === 0, 2)
        const cleared = Date.now() - started
        yield* Fiber.join(interrupting).pipe(Effect.timeout("10 seconds"))
        const interrupted = Date.now() - started
        const stats = yield* PgPool.PgPool.stats
        console.log(
          `interruption storm, 200 queries: none running on the server ${cleared} ms after the interrupts, ` +
            `all fibers done (connections closed) after ${interrupted} ms; stats inUse=${stats.inUse} total=${stats.total}`
        )
        assert.deepStrictEqual([stats.inUse, stats.waiting, stats.pending], [0, 0, 0])
        yield* sessionsMatchPool(cluster.url, opts.applicationName)
        assert.strictEqual((yield* sql<{ one: number }>`SELECT 1 AS one`)[0].one, 1)
      }).pipe(Effect.provide(PgPool.layer(opts)))
    }), 60_000)
})
