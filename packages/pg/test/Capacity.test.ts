import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Exit, Fiber } from "effect"
import { afterAll, beforeAll } from "vitest"
import { PgPool } from "../src/index.js"
import { freePort, type PgCluster, startCluster } from "./harness/PgCluster.js"
import { admin, io, options, waitFor } from "./utils.js"

// The server's limits as the pool meets them: a server with fewer connection slots than maxSize ("full" is not
// "down"), and a server that is down (the circuit breaker).

const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

describe("max_connections below maxSize", () => {
  let cluster: PgCluster
  let appUrl: string
  beforeAll(async () => {
    // 5 slots, 1 reserved for superusers; the pool connects as an ordinary role, so it can have 4
    cluster = await startCluster({
      name: "capacity",
      settings: { max_connections: "5", superuser_reserved_connections: "1" }
    })
    await cluster.query("CREATE ROLE app LOGIN")
    const u = new URL(cluster.url)
    u.username = "app"
    appUrl = u.toString()
  })
  afterAll(() => cluster?.destroy())

  it.live("maxSize 20, 50 callers for 6 s: no call fails, a few failed connects, the superuser still gets in", () =>
    Effect.gen(function*() {
      const opts = options(appUrl, {
        maxSize: 20,
        acquireTimeout: "10 seconds",
        connectBackoff: "100 millis",
        connectBackoffMax: "2 seconds"
      })
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        let ok = 0
        const failures: Array<string> = []
        const deadline = Date.now() + 6_000
        const caller = Effect.gen(function*() {
          while (Date.now() < deadline) {
            const exit = yield* Effect.exit(sql`SELECT pg_sleep(0.005)`)
            if (Exit.isSuccess(exit)) ok++
            else failures.push(String(Exit.isFailure(exit) ? exit.cause : ""))
          }
        })
        const callers = yield* Effect.fork(Effect.all(Array.from({ length: 50 }, () => caller), {
          concurrency: "unbounded",
          discard: true
        }))
        // a superuser is never locked out by the pool's attempts
        const superuserIn = yield* Effect.forEach(Array.from({ length: 10 }), () =>
          Effect.zipRight(Effect.sleep("400 millis"), Effect.exit(admin(cluster.url, "SELECT 1"))))
        yield* Fiber.join(callers)
        const stats = yield* PgPool.PgPool.stats
        console.log(
          `capacity trial: ${ok} calls ok, ${failures.length} failed, ${stats.connectFailures} failed connects in 6 s, ` +
            `pool total ${stats.total}, ceiling ${stats.ceiling}`
        )
        assert.deepStrictEqual(failures, [])
        assert.isAbove(ok, 1000)
        assert.isTrue(superuserIn.every(Exit.isSuccess), "the superuser got in every time")
        assert.strictEqual(stats.total, 4)
        assert.isAtMost(stats.connectFailures, 16 + 6 * 3) // the first burst, then a few per second at most
        assert.isFalse(stats.breakerOpen)
      }).pipe(Effect.provide(PgPool.layer(opts)))
    }), 60_000)
})

describe("server down: the circuit breaker", () => {
  let cluster: PgCluster
  beforeAll(async () => {
    cluster = await startCluster({ name: "breaker" })
  })
  afterAll(() => cluster?.destroy())

  // Times are printed for the closing note, not asserted (a loaded 2-core machine); what is asserted is that every
  // failure is typed and that the callers did not each make a connect.
  const wave = (sql: SqlClient.SqlClient) =>
    Effect.gen(function*() {
      const timed = Effect.suspend(() => {
        const start = performance.now()
        return Effect.map(Effect.exit(sql`SELECT 1`), (exit) => [performance.now() - start, exit] as const)
      })
      const results = yield* Effect.all(Array.from({ length: 1000 }, () => timed), { concurrency: "unbounded" })
      for (const [, exit] of results) {
        assert.isTrue(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag === "SqlError")
      }
      const times = results.map(([ms]) => ms)
      return `p50 ${percentile(times, 0.5).toFixed(1)} ms, p99 ${percentile(times, 0.99).toFixed(1)} ms`
    })

  for (const breakerThreshold of [5, 0]) {
    it.live(`nothing listening, breakerThreshold ${breakerThreshold}: 1,000 callers get a typed failure`, () =>
      Effect.gen(function*() {
        const port = yield* io(() => freePort())
        const url = `postgres://postgres@127.0.0.1:${port}/postgres`
        const opts = options(url, { connectOnStart: false, maxSize: 10, breakerThreshold })
        yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const first = yield* wave(sql)
          const second = yield* wave(sql)
          const stats = yield* PgPool.PgPool.stats
          console.log(
            `breaker trial (threshold ${breakerThreshold}): first 1000 callers ${first}; the next 1000 ${second}; ` +
              `${stats.connectFailures} connects tried`
          )
          if (breakerThreshold === 0) return assert.strictEqual(stats.connectFailures, 2000) // one per caller
          assert.isTrue(stats.breakerOpen)
          assert.isAtMost(stats.connectFailures, 15 + 5) // the first wave's, and a probe or so
        }).pipe(Effect.provide(PgPool.layer(opts)))
      }), 60_000)
  }

  it.live("the server stopped, then back: serving again within one probe backoff", () =>
    Effect.gen(function*() {
      const opts = options(cluster.url, { breakerBackoff: "200 millis", breakerBackoffMax: "1 second" })
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`SELECT 1`
        yield* io(() => cluster.stop("immediate"))
        // connections die with the server; callers learn it and the breaker opens
        yield* waitFor(
          Effect.zipRight(Effect.exit(sql`SELECT 1`), PgPool.PgPool.stats),
          (s) => s.breakerOpen,
          20
        )
        const turnedAway = yield* Effect.flip(sql`SELECT 1`)
        assert.include(turnedAway.message, "circuit breaker open")
        yield* io(() => cluster.start())
        const back = performance.now()
        yield* waitFor(Effect.exit(sql`SELECT 1`), Exit.isSuccess, 10)
        const ms = performance.now() - back
        console.log(`breaker trial: serving ${ms.toFixed(0)} ms after the server was back`)
        assert.isAtMost(ms, 1_000 + 250) // one backoff at its cap, and the poll's own step
        assert.isFalse((yield* PgPool.PgPool.stats).breakerOpen)
      }).pipe(Effect.provide(PgPool.layer(opts)))
    }), 60_000)
})
