import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Chunk, Effect, Exit, Fiber, Layer, Redacted, Stream } from "effect"
import * as net from "node:net"
import { afterAll, beforeAll } from "vitest"
import { PgPool } from "../src/index.js"
import { freePort, type PgCluster, startCluster } from "./harness/PgCluster.js"
import { admin, io, options, serverSessions, sessionsMatchPool, suiteUrl, waitFor } from "./utils.js"

const run = <A, E>(effect: Effect.Effect<A, E, PgPool.PgPool | SqlClient.SqlClient | PgClient.PgClient>, extra = {}) =>
  Effect.gen(function*() {
    const opts = options(suiteUrl(), extra)
    return yield* Effect.provide(effect, PgPool.layer(opts))
  })

describe("PgPool: @effect/sql-pg on our pool", () => {
  it.live("runs sql`...` queries and reports our pool's stats", () =>
    run(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<{ n: number }>`SELECT ${41}::int + 1 AS n`
      assert.strictEqual(rows[0].n, 42)
      const stats = yield* PgPool.PgPool.stats
      assert.isAtLeast(stats.acquired, 2) // connectOnStart and the query
      assert.strictEqual(stats.inUse, 0)
    })))

  it.live("returns rows as arrays (sql`...`.values), and a row transform that throws keeps its connection", () =>
    run(
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        assert.deepStrictEqual(yield* sql`SELECT 1 AS a, 'x' AS b`.values, [[1, "x"]])
        const pid = (yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`)[0].pid
        const exit = yield* Effect.exit(sql`SELECT 1 AS boom`)
        assert.isTrue(Exit.isFailure(exit) && exit.cause._tag === "Die") // the transform's defect, as sql-pg has it
        const stats = yield* PgPool.PgPool.stats
        assert.deepStrictEqual([stats.total, stats.destroyed], [1, 0]) // the connection did nothing wrong
        assert.strictEqual((yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`)[0].pid, pid)
      }),
      {
        maxSize: 1,
        transformResultNames: (name: string) => {
          if (name === "boom") throw new Error("a transform that throws")
          return name
        }
      }
    ))

  it.live("sql.withTransaction pins one connection and commits", () =>
    run(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TEMP TABLE IF NOT EXISTS t_commit (x int)`.pipe(Effect.ignore)
      const table = `t_${Date.now()}_${Math.floor(Math.random() * 1e6)}`
      yield* sql`CREATE TABLE ${sql(table)} (x int)`
      const pids = yield* sql.withTransaction(Effect.gen(function*() {
        const a = yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`
        yield* sql`INSERT INTO ${sql(table)} VALUES (1)`
        const b = yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`
        return [a[0].pid, b[0].pid]
      }))
      assert.strictEqual(pids[0], pids[1])
      const rows = yield* sql<{ n: string }>`SELECT count(*) AS n FROM ${sql(table)}`
      assert.strictEqual(Number(rows[0].n), 1)
      yield* sql`DROP TABLE ${sql(table)}`
    })))

  it.live("a transaction rolls back on failure and on interruption", () =>
    run(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const table = `t_${Date.now()}_${Math.floor(Math.random() * 1e6)}`
      yield* sql`CREATE TABLE ${sql(table)} (x int)`
      const failed = yield* Effect.exit(sql.withTransaction(
        Effect.zipRight(sql`INSERT INTO ${sql(table)} VALUES (1)`, Effect.fail("nope" as const))
      ))
      assert.isTrue(Exit.isFailure(failed))
      const fiber = yield* Effect.fork(sql.withTransaction(
        Effect.zipRight(sql`INSERT INTO ${sql(table)} VALUES (2)`, Effect.never)
      ))
      yield* Effect.sleep("200 millis")
      yield* Fiber.interrupt(fiber)
      const rows = yield* sql<{ n: string }>`SELECT count(*) AS n FROM ${sql(table)}`
      assert.strictEqual(Number(rows[0].n), 0)
      yield* sql`DROP TABLE ${sql(table)}`
    })))

  it.live("streams rows through a cursor", () =>
    run(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<{ n: number }>`SELECT generate_series(1, 1000) AS n`.stream.pipe(Stream.runCollect)
      assert.strictEqual(Chunk.size(rows), 1000)
      assert.strictEqual(Chunk.unsafeLast(rows).n, 1000)
      assert.strictEqual((yield* PgPool.PgPool.stats).inUse, 0)
    })))

  it.live("listen and notify", () =>
    run(Effect.gen(function*() {
      const pgClient = yield* PgClient.PgClient
      const channel = `chan_${process.pid}`
      const received = yield* pgClient.listen(channel).pipe(Stream.take(2), Stream.runCollect, Effect.fork)
      yield* Effect.sleep("300 millis")
      yield* pgClient.notify(channel, "one")
      yield* pgClient.notify(channel, "two")
      const got = yield* Fiber.join(received).pipe(Effect.timeout("5 seconds"))
      assert.deepStrictEqual(Chunk.toReadonlyArray(got), ["one", "two"])
    })))

  it.live("PgPool.withConnection lends a raw pg.Client", () =>
    run(Effect.gen(function*() {
      const result = yield* PgPool.withConnection((client) => PgPool.query<{ v: string }>(client, "SELECT version() AS v"))
      assert.match(result.rows[0].v, /PostgreSQL/)
    })))

  it.live("an interrupted query is cancelled on the server and its connection is not reused", () =>
    Effect.gen(function*() {
      const opts = options(suiteUrl(), { maxSize: 1 })
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const before = yield* PgPool.PgPool.stats
        const fiber = yield* Effect.fork(sql`SELECT pg_sleep(30)`)
        const active = `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND query LIKE '%pg_sleep(30)%' AND state = 'active'`
        yield* waitFor(admin<{ n: string }>(suiteUrl(), active, [opts.applicationName]), (r) => Number(r[0].n) === 1)
        const started = Date.now()
        yield* Fiber.interrupt(fiber)
        assert.isBelow(Date.now() - started, 3000)
        yield* waitFor(admin<{ n: string }>(suiteUrl(), active, [opts.applicationName]), (r) => Number(r[0].n) === 0, 3)
        // its user was interrupted: the connection is closed, not handed out again; the pool (maxSize 1) still serves
        const after = yield* PgPool.PgPool.stats
        assert.strictEqual(after.destroyed, before.destroyed + 1)
        const rows = yield* sql<{ one: number }>`SELECT 1 AS one`
        assert.strictEqual(rows[0].one, 1)
        yield* sessionsMatchPool(suiteUrl(), opts.applicationName)
      }).pipe(Effect.provide(PgPool.layer(opts)))
    }))

  it.live("a raw query interrupted mid-statement is cancelled too", () =>
    Effect.gen(function*() {
      const opts = options(suiteUrl(), { maxSize: 1 })
      yield* Effect.gen(function*() {
        const fiber = yield* Effect.fork(PgPool.withConnection((c) => PgPool.query(c, "SELECT pg_sleep(30)")))
        const active = `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'`
        yield* waitFor(admin<{ n: string }>(suiteUrl(), active, [opts.applicationName]), (r) => Number(r[0].n) === 1)
        yield* Fiber.interrupt(fiber)
        yield* waitFor(admin<{ n: string }>(suiteUrl(), active, [opts.applicationName]), (r) => Number(r[0].n) === 0, 3)
        yield* PgPool.withConnection((c) => PgPool.query(c, "SELECT 1"))
      }).pipe(Effect.provide(PgPool.layer(opts)))
    }))

  it.live("the pool's count and pg_stat_activity agree", () =>
    Effect.gen(function*() {
      const opts = options(suiteUrl(), { maxSize: 6 })
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* Effect.all(Array.from({ length: 20 }, () => sql`SELECT pg_sleep(0.02)`), { concurrency: 20 })
        const stats = yield* PgPool.PgPool.stats
        assert.strictEqual(stats.total, 6)
        assert.strictEqual(yield* serverSessions(suiteUrl(), opts.applicationName), stats.total)
        yield* PgPool.PgPool.drain
        yield* waitFor(serverSessions(suiteUrl(), opts.applicationName), (n) => n === 0, 3)
      }).pipe(Effect.provide(PgPool.layer(opts)))
      // the layer's scope closed: nothing left on the server
      yield* waitFor(serverSessions(suiteUrl(), opts.applicationName), (n) => n === 0, 3)
    }))

  it.live("a session killed on the server is not lent again", () =>
    Effect.gen(function*() {
      const opts = options(suiteUrl(), { maxSize: 1 })
      yield* Effect.gen(function*() {
        const pid = yield* PgPool.withConnection((c) =>
          Effect.map(PgPool.query<{ pid: number }>(c, "SELECT pg_backend_pid() AS pid"), (r) => r.rows[0].pid)
        )
        yield* admin(suiteUrl(), "SELECT pg_terminate_backend($1)", [pid])
        yield* Effect.sleep("100 millis")
        // within the validation bypass window, yet the dead client is replaced rather than lent
        const next = yield* PgPool.withConnection((c) =>
          Effect.map(PgPool.query<{ pid: number }>(c, "SELECT pg_backend_pid() AS pid"), (r) => r.rows[0].pid)
        )
        assert.notStrictEqual(next, pid)
      }).pipe(Effect.provide(PgPool.layer(opts)))
    }))

  it.live("a raw client given back with a query in flight, or ended by its user, is not lent again", () =>
    Effect.gen(function*() {
      const opts = options(suiteUrl(), { maxSize: 1 })
      yield* Effect.gen(function*() {
        const pidOf = (c: import("pg").Client) =>
          Effect.map(PgPool.query<{ pid: number }>(c, "SELECT pg_backend_pid() AS pid"), (r) => r.rows[0].pid)
        const forms = [
          (c: import("pg").Client) => void c.query("SELECT pg_sleep(10)").catch(() => {}), // promise
          (c: import("pg").Client) => void c.query("SELECT pg_sleep(10)", () => {}), // callback
          (c: import("pg").Client) => void c.query({ text: "SELECT pg_sleep(10)", callback: () => {} } as any), // config
          (c: import("pg").Client) => void c.end().catch(() => {})
        ]
        for (const leave of forms) {
          const pid = yield* PgPool.withConnection((c) => Effect.tap(pidOf(c), () => leave(c)))
          const next = yield* PgPool.withConnection(pidOf)
          assert.notStrictEqual(next, pid)
        }
        const sleeping = `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query LIKE '%pg_sleep(10)%'`
        // the queries left behind were cancelled on the server when their clients were closed
        yield* waitFor(admin<{ n: string }>(suiteUrl(), sleeping, [opts.applicationName]), (r) => Number(r[0].n) === 0, 5)
      }).pipe(Effect.provide(PgPool.layer(opts)))
    }))

  it.live("a statement whose backend is killed fails; the caller queued behind it gets a fresh connection", () =>
    Effect.gen(function*() {
      const opts = options(suiteUrl(), { maxSize: 1 })
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const a = yield* Effect.fork(sql`SELECT pg_sleep(5)`)
        const sleeping = `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE '%pg_sleep(5)%'`
        const [{ pid }] = yield* waitFor(admin<{ pid: number }>(suiteUrl(), sleeping, [opts.applicationName]), (r) => r.length === 1)
        const b = yield* Effect.fork(sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`)
        yield* waitFor(PgPool.PgPool.stats, (s) => s.waiting === 1)
        yield* admin(suiteUrl(), "SELECT pg_terminate_backend($1)", [pid])
        const failed = yield* Fiber.await(a)
        assert.isTrue(Exit.isFailure(failed))
        const served = yield* Fiber.join(b)
        assert.notStrictEqual(served[0].pid, pid)
      }).pipe(Effect.provide(PgPool.layer(opts)))
    }))
})

describe("PgPool: connection errors are typed and keep secrets", () => {
  let cluster: PgCluster
  beforeAll(async () => {
    cluster = await startCluster({ name: "auth" })
    await cluster.query("CREATE ROLE app LOGIN PASSWORD 'right-horse-battery'")
    // password auth for `app` over TCP; the harness's own superuser keeps trust
    const fs = await import("node:fs")
    const hba = `${cluster.dataDir}/pg_hba.conf`
    fs.writeFileSync(hba, `host all app 127.0.0.1/32 scram-sha-256\n${fs.readFileSync(hba, "utf8")}`)
    await cluster.query("SELECT pg_reload_conf()")
  })
  afterAll(() => cluster?.destroy())

  const failure = (opts: PgPool.PgPoolConfig) =>
    Effect.flip(Effect.provide(PgPool.PgPool.stats, PgPool.layer({ connectTimeout: "5 seconds", ...opts })))

  it.live("the right password works", () =>
    Effect.gen(function*() {
      const url = `postgres://app:right-horse-battery@127.0.0.1:${cluster.port}/postgres`
      const stats = yield* Effect.provide(PgPool.PgPool.stats, PgPool.layer({ url: Redacted.make(url) }))
      assert.strictEqual(stats.total, 1)
    }))

  it.live("a wrong password in the URL: ConnectionError naming host, port and database, without the password", () =>
    Effect.gen(function*() {
      const url = `postgres://app:wrong-s3cret-pw@127.0.0.1:${cluster.port}/postgres`
      const error = yield* failure({ url: Redacted.make(url) })
      assert.strictEqual(error._tag, "ConnectionError")
      assert.include(error.message, `127.0.0.1:${cluster.port}/postgres`)
      assert.include(error.message, `password authentication failed for user "app"`)
      assert.notInclude(error.message, "wrong-s3cret-pw")
      assert.notInclude(JSON.stringify(error), "wrong-s3cret-pw")
    }))

  it.live("a wrong password as an option: same, and the password is never printed", () =>
    Effect.gen(function*() {
      const error = yield* failure({
        host: "127.0.0.1",
        port: cluster.port,
        username: "app",
        database: "postgres",
        password: Redacted.make("another-s3cret")
      })
      assert.include(error.message, "password authentication failed")
      assert.notInclude(error.message, "another-s3cret")
    }))

  it.live("an unknown database", () =>
    Effect.gen(function*() {
      const error = yield* failure({ url: Redacted.make(`postgres://postgres@127.0.0.1:${cluster.port}/no_such_db`) })
      assert.strictEqual(error._tag, "ConnectionError")
      assert.include(error.message, `database "no_such_db" does not exist`)
    }))

  it.live("a refused port", () =>
    Effect.gen(function*() {
      const port = yield* io(() => freePort())
      const error = yield* failure({ url: Redacted.make(`postgres://postgres:pw-xyz@127.0.0.1:${port}/db1`) })
      assert.strictEqual(error._tag, "ConnectionError")
      assert.include(error.message, `127.0.0.1:${port}/db1`)
      assert.include(error.message, "connection refused")
      assert.notInclude(error.message, "pw-xyz")
    }))

  it.live("a host that DNS does not know", () =>
    Effect.gen(function*() {
      const error = yield* failure({ host: "no-such-host.invalid", port: 5432, database: "db1" })
      assert.strictEqual(error._tag, "ConnectionError")
      assert.include(error.message, `DNS lookup of "no-such-host.invalid" failed`)
    }))

  it.live("a server that never answers: ConnectionError after connectTimeout, naming the server", () =>
    Effect.gen(function*() {
      // accepts TCP and then says nothing, as a firewalled or hung host does
      const silent = net.createServer(() => {})
      yield* Effect.async<void>((resume) => void silent.listen(0, "127.0.0.1", () => resume(Effect.void)))
      const port = (silent.address() as net.AddressInfo).port
      const started = Date.now()
      const error = yield* failure({ url: Redacted.make(`postgres://app:pw-q9@127.0.0.1:${port}/db2`), connectTimeout: "500 millis" })
        .pipe(Effect.ensuring(Effect.sync(() => silent.close())))
      assert.strictEqual(error._tag, "ConnectionError")
      assert.include(error.message, `127.0.0.1:${port}/db2`)
      assert.include(error.message, "no answer within the connect timeout")
      assert.notInclude(error.message, "pw-q9")
      assert.isBelow(Date.now() - started, 3000)
    }))

  it.live("TLS demanded from a server without TLS", () =>
    Effect.gen(function*() {
      const error = yield* failure({ url: Redacted.make(`postgres://postgres@127.0.0.1:${cluster.port}/postgres`), ssl: true })
      assert.strictEqual(error._tag, "ConnectionError")
      assert.include(error.message, "TLS negotiation failed")
    }))

  it.live("invalid pool options fail the layer with InvalidConfig", () =>
    Effect.gen(function*() {
      const error = yield* failure({ url: Redacted.make(`postgres://postgres@127.0.0.1:${cluster.port}/postgres`), maxSize: 0 })
      assert.strictEqual(error._tag, "InvalidConfig")
    }))

  it.live("a failing connect later reaches the query as a typed SqlError carrying the ConnectionError", () =>
    Effect.gen(function*() {
      yield* admin(cluster.url, "CREATE DATABASE closing")
      const opts = options(`postgres://postgres@127.0.0.1:${cluster.port}/closing`, { maxSize: 2 })
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* PgPool.PgPool.drain
        yield* admin(cluster.url, "ALTER DATABASE closing WITH ALLOW_CONNECTIONS false")
        const error = yield* Effect.flip(sql`SELECT 1`)
        assert.strictEqual(error._tag, "SqlError")
        const cause = error.cause as { _tag?: string; message?: string }
        assert.strictEqual(cause._tag, "ConnectionError")
        assert.include(cause.message, `127.0.0.1:${cluster.port}/closing`)
      }).pipe(Effect.provide(PgPool.layer(opts)))
    }))
})

describe("PgPool.layerConfig", () => {
  it.live("reads connection and pool options from Config", () =>
    Effect.gen(function*() {
      const { Config, ConfigProvider } = yield* Effect.promise(() => import("effect"))
      const layer = PgPool.layerConfig({
        url: Config.redacted("DATABASE_URL"),
        maxSize: Config.integer("POOL_MAX"),
        name: Config.string("POOL_NAME")
      })
      const stats = yield* Effect.provide(PgPool.PgPool.stats, layer).pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(
          new Map([["DATABASE_URL", suiteUrl()], ["POOL_MAX", "3"], ["POOL_NAME", "from-env"]])
        ))
      )
      assert.deepStrictEqual([stats.maxSize, stats.name], [3, "from-env"])
    }))

  it.live("two PgPool layers of different servers stay apart (a Layer per service)", () =>
    Effect.gen(function*() {
      const layer = PgPool.layer(options(suiteUrl()))
      const program = Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        return (yield* sql<{ one: number }>`SELECT 1 AS one`)[0].one
      })
      assert.strictEqual(yield* Effect.provide(program, Layer.fresh(layer)), 1)
    }))
})
