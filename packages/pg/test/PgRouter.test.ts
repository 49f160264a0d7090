import { assert, describe, it } from "@effect/vitest"
import { SqlRouter } from "@connection-pool/sql"
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Config, ConfigProvider, Deferred, Effect, Exit, Fiber, Layer, Metric, Redacted } from "effect"
import { afterAll, beforeAll } from "vitest"
import { PgRouter } from "../src/index.js"
import type { PgRouterConfig } from "../src/PgRouter.js"
import { type ReplicaSet, startReplicaSet } from "./harness/ReplicaSet.js"
import { io, waitFor } from "./utils.js"

let rs: ReplicaSet
beforeAll(async () => {
  rs = await startReplicaSet({ name: "router" })
  await rs.primary.query("CREATE TABLE kv (id int PRIMARY KEY, v text)")
  await rs.primary.query("CREATE TABLE tick (n int)")
  await rs.caughtUp()
}, 90_000)
afterAll(() => rs?.destroy())

const config = (extra: Partial<PgRouterConfig> = {}): PgRouterConfig => ({
  primary: { url: Redacted.make(rs.primary.url) },
  replicas: rs.replicas.map((r) => ({ url: Redacted.make(r.url) })),
  maxSize: 5,
  acquireTimeout: "5 seconds",
  connectTimeout: "2 seconds",
  lagInterval: "50 millis",
  ...extra
})

type Env = SqlClient.SqlClient | SqlRouter.SqlRouter
const withRouter = <A, E>(effect: Effect.Effect<A, E, Env>, extra: Partial<PgRouterConfig> = {}) =>
  Effect.provide(effect, PgRouter.layer(config(extra)))

const port = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(sql<{ port: number }>`SELECT inet_server_port() AS port`, (rows) => rows[0]!.port))

const inRecovery = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(sql<{ r: boolean }>`SELECT pg_is_in_recovery() AS r`, (rows) => rows[0]!.r))

/** Reads' server ports, counted per role. */
const spread = (n: number, concurrency = 1) =>
  Effect.map(Effect.all(Array.from({ length: n }, () => SqlRouter.withRead(port)), { concurrency }), (ports) => {
    const [r1, r2] = rs.replicas
    return {
      primary: ports.filter((p) => p === rs.primary.port).length,
      r1: ports.filter((p) => p === r1!.port).length,
      r2: ports.filter((p) => p === r2!.port).length
    }
  })

const status = (name: string) =>
  Effect.map(Effect.flatMap(SqlRouter.SqlRouter, (r) => r.stats), (s) => s.servers.find((x) => x.name === name)!)

/** Keeps the primary writing, so that a replica whose replay is paused falls behind. */
const writer = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.forever(Effect.zipRight(sql`INSERT INTO tick VALUES (1)`, Effect.sleep("20 millis"))))

describe("PgRouter: read/write splitting over a primary and two streaming replicas", () => {
  it.live("reads spread over the replicas by each selection mode; writes stay on the primary", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* withRouter(spread(20)), { primary: 0, r1: 10, r2: 10 })
      const random = yield* withRouter(spread(60), { selection: "random" })
      assert.isTrue(random.primary === 0 && random.r1 > 5 && random.r2 > 5, JSON.stringify(random))
      const least = yield* withRouter(spread(60, 20), { selection: "least-connections" })
      assert.isTrue(least.primary === 0 && least.r1 > 5 && least.r2 > 5, JSON.stringify(least))
      const chosen = yield* withRouter(spread(10), { selection: (rs) => rs[rs.length - 1]!.index })
      assert.deepStrictEqual(chosen, { primary: 0, r1: 0, r2: 10 })
      yield* withRouter(Effect.gen(function*() {
        assert.strictEqual(yield* port, rs.primary.port)
        assert.isFalse(yield* inRecovery)
        assert.isTrue(yield* SqlRouter.withRead(inRecovery))
        assert.isFalse(yield* SqlRouter.withRead(SqlRouter.withWrite(inRecovery)))
        const s = yield* status("primary")
        assert.isAtLeast(s.writes, 3)
      }))
      const metrics = (yield* Metric.snapshot).map((m) => m.metricKey)
      const statements = metrics.find((k) =>
        k.name === "db.client.router.statements" &&
        k.tags.some((t) => t.key === "db.client.router.route" && t.value === "read") &&
        k.tags.some((t) => t.key === "server.address" && t.value === "replica2")
      )
      assert.isDefined(statements)
      assert.isTrue(metrics.some((k) => k.name === "db.client.router.replica.lag"))
    }))

  it.live("bad options are an InvalidConfig naming the option", () =>
    Effect.gen(function*() {
      const lag = yield* Effect.flip(withRouter(Effect.void, { maxLag: "-1 seconds" }))
      assert.strictEqual(lag._tag, "InvalidConfig")
      assert.include(lag.message, "maxLag")
      const dup = yield* Effect.flip(withRouter(Effect.void, {
        replicas: rs.replicas.map((r) => ({ name: "r", url: Redacted.make(r.url) }))
      }))
      assert.include(dup.message, "duplicate server name")
      const rejoin = yield* Effect.flip(withRouter(Effect.void, { maxLag: "1 second", rejoinLag: "2 seconds" }))
      assert.include(rejoin.message, "rejoinLag")
    }))

  it.live("every statement of a transaction runs on the primary, wherever it was opened", () =>
    withRouter(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const inside = yield* SqlRouter.withRead(sql.withTransaction(Effect.gen(function*() {
        const a = yield* port
        yield* sql`INSERT INTO kv VALUES (-1, 'tx') ON CONFLICT (id) DO NOTHING`
        const b = yield* SqlRouter.withRead(port) // a read region inside the transaction: still the primary
        const c = yield* inRecovery
        return [a, b, c]
      })))
      assert.deepStrictEqual(inside, [rs.primary.port, rs.primary.port, false])
    })))

  it.live("a write in a read region fails with WriteOnReplica; replica sessions are read-only", () =>
    withRouter(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const error = yield* Effect.flip(SqlRouter.withRead(sql`INSERT INTO kv VALUES (-2, 'oops')`))
      assert.strictEqual(error._tag, "WriteOnReplica")
      assert.include(error.message, "inside withRead")
      const setting = sql<{ ro: string }>`SELECT current_setting('default_transaction_read_only') AS ro`
      const ro = yield* SqlRouter.withRead(setting)
      assert.strictEqual(ro[0]!.ro, "on")
      const rw = yield* setting
      assert.strictEqual(rw[0]!.ro, "off")
    })))

  it.live("a replica whose replay is paused is skipped once past maxLag, and rejoins when resumed", () =>
    withRouter(
      Effect.gen(function*() {
        const [r1] = rs.replicas
        const load = yield* Effect.fork(writer)
        yield* io(() => rs.pauseReplay(r1!))
        const started = Date.now()
        yield* waitFor(status("replica1"), (s) => s.status === "lagging", 5)
        const skippedAfter = Date.now() - started
        assert.isBelow(skippedAfter, 2_000) // maxLag 300 ms, measured every 50 ms
        const during = yield* spread(10)
        assert.deepStrictEqual(during, { primary: 0, r1: 0, r2: 10 })
        yield* io(() => rs.resumeReplay(r1!))
        yield* waitFor(status("replica1"), (s) => s.status === "up", 5)
        const after = yield* spread(10)
        assert.deepStrictEqual(after, { primary: 0, r1: 5, r2: 5 })
        yield* Fiber.interrupt(load)
      }).pipe(Effect.ensuring(Effect.promise(() => rs.resumeReplay(rs.replicas[0]!).catch(() => {})))),
      { maxLag: "300 millis" }
    ))

  const pairs = (offset: number) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const results = yield* Effect.forEach(
        Array.from({ length: 1000 }, (_, i) => offset + i),
        (id) =>
          Effect.gen(function*() {
            yield* sql`INSERT INTO kv VALUES (${id}, ${"v" + id})`
            const rows = yield* SqlRouter.withRead(sql<{ v: string }>`SELECT v FROM kv WHERE id = ${id}`)
            return rows.length === 1 && rows[0]!.v === "v" + id
          }),
        { concurrency: 50 }
      )
      return results.filter((fresh) => !fresh).length
    })

  it.live("read-your-writes: 1,000 write-then-read pairs while replication lags, 0 stale; off, stale reads", () =>
    Effect.gen(function*() {
      for (const r of rs.replicas) yield* io(() => rs.pauseReplay(r))
      const stale = yield* withRouter(pairs(1_000), { maxLag: "1 minute" })
      assert.strictEqual(stale, 0)
      const off = yield* withRouter(pairs(10_000), { maxLag: "1 minute", readYourWrites: false })
      assert.isAbove(off, 0)
      const window = yield* withRouter(
        Effect.gen(function*() {
          const stale = yield* pairs(20_000)
          return [stale, (yield* Effect.flatMap(SqlRouter.SqlRouter, (r) => r.stats)).pinnedReads] as const
        }),
        { maxLag: "1 minute", readYourWrites: "window" }
      )
      assert.deepStrictEqual(window, [0, 1000])
      // replaying again: reads find replicas that have their writes (asking one when its last sample is older)
      for (const r of rs.replicas) yield* io(() => rs.resumeReplay(r))
      const live = yield* withRouter(Effect.gen(function*() {
        const stale = yield* pairs(30_000)
        const stats = yield* Effect.flatMap(SqlRouter.SqlRouter, (r) => r.stats)
        return { stale, replicaReads: stats.servers.slice(1).reduce((n, s) => n + s.reads, 0) }
      }))
      assert.strictEqual(live.stale, 0)
      assert.isAbove(live.replicaReads, 500)
    }).pipe(Effect.ensuring(Effect.forEach(rs.replicas, (r) => io(() => rs.resumeReplay(r).catch(() => {}))))))

  it.live("SqlRouter.session shares read-your-writes among the fibers of a request", () =>
    Effect.gen(function*() {
      for (const r of rs.replicas) yield* io(() => rs.pauseReplay(r))
      const [shared, separate] = yield* withRouter(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        // a writer and a reader on sibling fibers: the reader starts once the write is done
        const siblings = (id: number) =>
          Effect.gen(function*() {
            const written = yield* Deferred.make<void>()
            const writer = Effect.zipRight(sql`INSERT INTO kv VALUES (${id}, 'x')`, Deferred.succeed(written, undefined))
            const reader = Effect.zipRight(
              Deferred.await(written),
              SqlRouter.withRead(sql<{ v: string }>`SELECT v FROM kv WHERE id = ${id}`)
            )
            const [rows] = yield* Effect.all([reader, writer], { concurrency: 2 })
            return rows.length
          })
        return [yield* SqlRouter.session(siblings(40_000)), yield* siblings(40_001)] as const
      }), { maxLag: "1 minute" })
      assert.deepStrictEqual([shared, separate], [1, 0]) // outside a session, a sibling's write is not this fiber's
    }).pipe(Effect.ensuring(Effect.forEach(rs.replicas, (r) => io(() => rs.resumeReplay(r).catch(() => {}))))))

  it.live("a replica killed under a 100-fiber read load: reads move on, only those in flight there fail", () =>
    withRouter(Effect.gen(function*() {
      const [r1] = rs.replicas
      let ok = 0
      let failed = 0
      let stop = false
      const reader = Effect.gen(function*() {
        while (!stop) {
          const exit = yield* Effect.exit(SqlRouter.withRead(port))
          if (Exit.isSuccess(exit)) ok++
          else failed++
        }
      })
      const readers = yield* Effect.fork(Effect.all(Array.from({ length: 100 }, () => reader), { concurrency: 100 }))
      yield* Effect.sleep("300 millis")
      yield* io(() => r1!.kill())
      yield* waitFor(status("replica1"), (s) => s.status === "down", 5)
      const before = ok
      yield* waitFor(Effect.sync(() => ok), (n) => n > before + 200, 10) // still reading, elsewhere
      stop = true
      yield* Fiber.join(readers)
      assert.isAtMost(failed, 5) // replica1's pool has 5 connections: at most those were in flight
      yield* io(() => r1!.start())
      yield* waitFor(status("replica1"), (s) => s.status === "up", 10)
      const after = yield* spread(10)
      assert.deepStrictEqual(after, { primary: 0, r1: 5, r2: 5 })
    })))

  it.live("all replicas down: reads go to the primary, or fail with ReplicasUnavailable when asked", () =>
    Effect.gen(function*() {
      yield* Effect.forEach(rs.replicas, (r) => io(() => r.stop("fast")), { discard: true })
      const served = yield* withRouter(Effect.gen(function*() {
        yield* waitFor(status("replica2"), (s) => s.status === "down", 5)
        const counts = yield* spread(5)
        const stats = yield* Effect.flatMap(SqlRouter.SqlRouter, (r) => r.stats)
        return [counts.primary, stats.fallbacks] as const
      }), { connectOnStart: false })
      assert.deepStrictEqual(served, [5, 5])
      const error = yield* withRouter(Effect.gen(function*() {
        yield* waitFor(status("replica2"), (s) => s.status === "down", 5)
        return yield* Effect.flip(SqlRouter.withRead(port))
      }), { connectOnStart: false, fallback: "fail" })
      assert.strictEqual(error._tag, "ReplicasUnavailable")
      if (error._tag === "ReplicasUnavailable") {
        assert.deepStrictEqual(error.replicas.map((r) => r.name), ["replica1", "replica2"])
        assert.include(error.message, "replica1: down (unreachable")
      }
    }).pipe(Effect.ensuring(Effect.forEach(rs.replicas, (r) => io(() => r.start()), { discard: true }))))

  it.live("the primary stopped: writes fail fast with a typed error; Config gives each server a Redacted URL", () =>
    Effect.gen(function*() {
      const layer = PgRouter.layerConfig({
        primary: { url: Config.redacted("PRIMARY_URL") },
        replicas: Config.map(Config.array(Config.redacted(Config.string()), "REPLICA_URLS"), (urls) =>
          urls.map((url) => ({ url }))),
        maxSize: Config.succeed(5),
        connectTimeout: Config.succeed("2 seconds")
      }).pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(
        new Map([["PRIMARY_URL", rs.primary.url], ["REPLICA_URLS", rs.replicas.map((r) => r.url).join(",")]])
      ))))
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const routed = yield* Effect.flatMap(SqlRouter.SqlRouter, (r) => r.stats)
        assert.deepStrictEqual(routed.servers.map((s) => s.name), ["primary", "replica1", "replica2"])
        yield* io(() => rs.primary.stop("fast"))
        const started = Date.now()
        const error = yield* Effect.flip(sql`INSERT INTO kv VALUES (-3, 'down')`)
        assert.isBelow(Date.now() - started, 3_000)
        assert.strictEqual(error._tag, "SqlError")
        assert.include(String((error.cause as { message?: string }).message), "could not connect to PostgreSQL")
        // reads still work on the replicas
        assert.notStrictEqual(yield* SqlRouter.withRead(port), rs.primary.port)
      }).pipe(Effect.provide(layer), Effect.ensuring(io(() => rs.primary.start())))
    }))

  it.live("SqlRouter over any @effect/sql clients (here sql-pg's own): routing, and read-your-writes by time", () =>
    Effect.gen(function*() {
      const client = (url: string) =>
        Effect.provide(PgClient.make({ url: Redacted.make(url), maxConnections: 2 }), Reactivity.layer)
      const primary = yield* client(rs.primary.url)
      const replicas = yield* Effect.forEach(rs.replicas, (r) => client(r.url))
      const router = yield* Effect.provide(
        SqlRouter.make({
          primary: { name: "p", client: primary },
          replicas: replicas.map((c, i) => ({ name: `r${i}`, client: c })),
          compiler: PgClient.makeCompiler(),
          lagInterval: "50 millis",
          readYourWritesWindow: "1 second"
        }),
        Reactivity.layer
      )
      const ports = yield* Effect.provideService(
        Effect.gen(function*() {
          const reads = yield* Effect.all([SqlRouter.withRead(port), SqlRouter.withRead(port)])
          const sql = yield* SqlClient.SqlClient
          yield* sql`INSERT INTO kv VALUES (50000, 'x')`
          // no replication positions given: the time window keeps this fiber's reads on the primary
          return [...reads, yield* SqlRouter.withRead(port)]
        }),
        SqlClient.SqlClient,
        router.client
      )
      assert.deepStrictEqual(ports, [rs.replicas[0]!.port, rs.replicas[1]!.port, rs.primary.port])
      assert.strictEqual((yield* router.stats).pinnedReads, 1)
    }).pipe(Effect.scoped))

  it.live("a promoted replica is no longer read from (last: the promotion is for good)", () =>
    withRouter(Effect.gen(function*() {
      yield* io(() => rs.promote(rs.replicas[1]!))
      const s = yield* waitFor(status("replica2"), (s) => s.status === "promoted", 5)
      assert.include(s.reason!, "not in recovery")
      assert.deepStrictEqual(yield* spread(6), { primary: 0, r1: 6, r2: 0 })
    })))
})
