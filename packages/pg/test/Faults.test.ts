import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Deferred, Effect, Exit, Fiber, Redacted, Ref } from "effect"
import pg from "pg"
import { afterAll, beforeAll } from "vitest"
import { PgPool } from "../src/index.js"
import { freePort, type PgCluster, startCluster } from "./harness/PgCluster.js"
import { admin, io, options, sessionsMatchPool, waitFor } from "./utils.js"

// Real servers that fail: sessions killed under load, the server stopped hard and restarted, too few
// max_connections. Each test asserts that nothing hangs, every failed call is a typed error, and the pool's
// count agrees with the server's once it settles. The same suite runs through PgBouncer in transaction mode.

const terminateAll =
  "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"

/** What a failed call may be: a typed error, never a defect or a hang. */
const outcome = (exit: Exit.Exit<unknown, SqlError>): "ok" | string => {
  if (Exit.isSuccess(exit)) return "ok"
  const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
  assert.isDefined(failure, `a call ended in something other than a typed failure: ${exit.cause._tag}`)
  assert.strictEqual(failure!._tag, "SqlError")
  const inner = (failure!.cause as { _tag?: string } | undefined)?._tag
  return inner ?? "SqlError"
}

for (const via of ["direct", "pgbouncer"] as const) {
  describe(`faults (${via})`, () => {
    let cluster: PgCluster
    let url: string
    beforeAll(async () => {
      cluster = await startCluster({ name: `faults-${via}`, pgbouncer: via === "pgbouncer" })
      url = via === "pgbouncer" ? cluster.pgbouncer!.url : cluster.url
    })
    afterAll(() => cluster?.destroy())

    it.live("sessions terminated while 100 fibers run queries: the workload finishes, broken ones are replaced", () =>
      Effect.gen(function*() {
        const opts = options(url, { maxSize: 10 })
        yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const outcomes = yield* Ref.make(new Map<string, number>())
          const record = (o: string) => Ref.update(outcomes, (m) => new Map(m).set(o, (m.get(o) ?? 0) + 1))
          const worker = Effect.forEach(
            Array.from({ length: 20 }),
            () => Effect.flatMap(Effect.exit(sql`SELECT pg_sleep(0.002)`), (exit) => record(outcome(exit))),
            { discard: true }
          )
          const workers = yield* Effect.fork(Effect.all(Array.from({ length: 100 }, () => worker), {
            concurrency: "unbounded",
            discard: true
          }))
          let killed = 0
          for (let i = 0; i < 5; i++) {
            yield* Effect.sleep("60 millis")
            killed += Number((yield* admin<{ n: string }>(cluster.url, terminateAll))[0].n)
          }
          yield* Fiber.join(workers).pipe(Effect.timeout("60 seconds"))
          const counts = yield* Ref.get(outcomes)
          const total = [...counts.values()].reduce((a, b) => a + b, 0)
          assert.strictEqual(total, 2000)
          assert.isAbove(counts.get("ok") ?? 0, 1000)
          assert.isAbove(killed, 0)
          // the pool serves on fresh sessions, and its count matches the server's
          assert.strictEqual((yield* sql<{ one: number }>`SELECT 1 AS one`)[0].one, 1)
          const stats = yield* PgPool.PgPool.stats
          assert.deepStrictEqual([stats.inUse, stats.waiting, stats.pending], [0, 0, 0])
          if (via === "direct") {
            assert.isAbove(stats.destroyed, 0)
            yield* sessionsMatchPool(cluster.url, opts.applicationName)
          }
        }).pipe(Effect.provide(PgPool.layer(opts)))
      }), 90_000)

    it.live("server stopped hard under load: calls fail fast, the pool serves again within 2 s of the restart", () =>
      Effect.gen(function*() {
        const opts = options(url, {
          maxSize: 5,
          acquireTimeout: "2 seconds",
          connectTimeout: "1 second",
          connectBackoffMax: "500 millis"
        })
        yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const stop = yield* Deferred.make<void>()
          const slowest = yield* Ref.make(0)
          const outcomes = yield* Ref.make(new Set<string>())
          const worker = Effect.gen(function*() {
            while (!(yield* Deferred.isDone(stop))) {
              const started = Date.now()
              const exit = yield* Effect.exit(sql`SELECT 1`)
              yield* Ref.update(slowest, (s) => Math.max(s, Date.now() - started))
              const o = outcome(exit)
              yield* Ref.update(outcomes, (set) => new Set(set).add(o))
              if (o !== "ok") yield* Effect.sleep("20 millis")
            }
          })
          const workers = yield* Effect.fork(Effect.all(Array.from({ length: 20 }, () => worker), {
            concurrency: "unbounded",
            discard: true
          }))
          yield* Effect.sleep("300 millis")
          yield* io(() => cluster.stop("immediate"))
          yield* Effect.sleep("1500 millis")
          yield* io(() => cluster.start())
          const back = Date.now()
          yield* waitFor(Effect.exit(sql`SELECT 1`), Exit.isSuccess, 5)
          const recovered = Date.now() - back
          yield* Deferred.succeed(stop, undefined)
          yield* Fiber.join(workers).pipe(Effect.timeout("10 seconds"))
          assert.isBelow(recovered, 2000, `served again ${recovered} ms after the server was back`)
          // no call waited past acquireTimeout (plus the time to notice a dead socket)
          assert.isBelow(yield* Ref.get(slowest), 3500)
          const seen = yield* Ref.get(outcomes)
          assert.isTrue(seen.has("ok"))
          assert.isAbove(seen.size, 1, `no failure seen during the outage: ${[...seen]}`)
          yield* waitFor(PgPool.PgPool.stats, (s) => s.inUse === 0 && s.waiting === 0 && s.pending === 0)
          if (via === "direct") {
            yield* sessionsMatchPool(cluster.url, opts.applicationName)
          }
        }).pipe(Effect.provide(PgPool.layer(opts)))
      }), 60_000)

    it.live("a transaction survives nothing it should not: rolled back when its session is killed", () =>
      Effect.gen(function*() {
        const opts = options(url, { maxSize: 3 })
        yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const table = `t_${via}_${Date.now()}`
          yield* sql`CREATE TABLE ${sql(table)} (x int)`
          const exit = yield* Effect.exit(sql.withTransaction(Effect.gen(function*() {
            yield* sql`INSERT INTO ${sql(table)} VALUES (1)`
            yield* admin(cluster.url, terminateAll)
            yield* sql`INSERT INTO ${sql(table)} VALUES (2)`
          })))
          assert.isTrue(Exit.isFailure(exit))
          const rows = yield* waitFor(Effect.exit(sql<{ n: string }>`SELECT count(*) AS n FROM ${sql(table)}`), Exit.isSuccess)
          assert.strictEqual(Exit.isSuccess(rows) && Number(rows.value[0].n), 0)
        }).pipe(Effect.provide(PgPool.layer(opts)))
      }), 30_000)

    it.live("an interrupted long query is cancelled on the server", () =>
      Effect.gen(function*() {
        const opts = options(url, { maxSize: 2 })
        yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const active =
            "SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND state = 'active' AND pid <> pg_backend_pid()"
          const fiber = yield* Effect.fork(sql`SELECT pg_sleep(60)`)
          yield* waitFor(admin<{ n: string }>(cluster.url, active), (r) => Number(r[0].n) === 1)
          yield* Fiber.interrupt(fiber).pipe(Effect.timeout("5 seconds"))
          yield* waitFor(admin<{ n: string }>(cluster.url, active), (r) => Number(r[0].n) === 0, 5)
          assert.strictEqual((yield* sql<{ one: number }>`SELECT 1 AS one`)[0].one, 1)
          if (via === "pgbouncer") assert.isTrue(alive(cluster.pgbouncer!.pid), "PgBouncer survived the cancel")
        }).pipe(Effect.provide(PgPool.layer(opts)))
      }), 30_000)
  })
}

const alive = (pid: number | undefined) => {
  try {
    return pid !== undefined && process.kill(pid, 0)
  } catch {
    return false
  }
}

describe("faults: max_connections below the pool's maxSize", () => {
  let cluster: PgCluster
  beforeAll(async () => {
    cluster = await startCluster({ name: "maxconn", settings: { max_connections: "6", superuser_reserved_connections: "0" } })
  })
  afterAll(() => cluster?.destroy())

  it.live("a connect the server refuses for want of room is a ConnectionError marked atCapacity", () =>
    Effect.gen(function*() {
      // every slot taken by clients of our own
      const held = yield* Effect.acquireRelease(
        io(async () => {
          const clients: Array<pg.Client> = []
          for (let i = 0; i < 6; i++) {
            const client = new pg.Client({ connectionString: cluster.url })
            client.on("error", () => {})
            await client.connect()
            clients.push(client)
          }
          return clients
        }),
        (clients) => io(() => Promise.all(clients.map((c) => c.end().catch(() => {}))))
      )
      assert.strictEqual(held.length, 6)
      const error = yield* Effect.flip(PgPool.driver({ url: Redacted.make(cluster.url) }).connect)
      assert.strictEqual(error._tag, "ConnectionError")
      assert.isTrue(error.atCapacity)
      assert.include(error.message, "too many connections")
      // a server that is down is not at capacity
      yield* Effect.sync(() => held.forEach((c) => c.end()))
      const port = yield* io(() => freePort())
      const down = yield* Effect.flip(PgPool.driver({ url: Redacted.make(`postgres://postgres@127.0.0.1:${port}/x`) }).connect)
      assert.notStrictEqual(down.atCapacity, true)
    }).pipe(Effect.scoped), 30_000)

  it.live("callers past the server's slots wait for a release instead of failing; the pool keeps what it has", () =>
    Effect.gen(function*() {
      const opts = options(cluster.url, { maxSize: 12, connectOnStart: false, acquireTimeout: "10 seconds" })
      yield* Effect.gen(function*() {
        const exits = yield* Effect.all(
          Array.from({ length: 10 }, () =>
            Effect.exit(PgPool.withConnection((client) =>
              Effect.zipRight(PgPool.query(client, "SELECT 1"), Effect.sleep("300 millis"))
            ))),
          { concurrency: "unbounded" }
        )
        assert.isTrue(exits.every(Exit.isSuccess), "every caller was served")
        const after = yield* PgPool.PgPool.stats
        assert.isAtMost(after.total, 6)
        assert.isAbove(after.connectFailures, 0) // it did meet the limit
        assert.strictEqual(after.idle, after.total) // the connections it had are kept, idle and working
        yield* PgPool.withConnection((client) => PgPool.query(client, "SELECT 1"))
      }).pipe(Effect.provide(PgPool.layer(opts)))
    }), 30_000)
})
