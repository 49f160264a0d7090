import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Cause, Effect, Exit, Fiber } from "effect"
import { PgPool } from "../src/index.js"
import { admin, options, suiteUrl, waitFor } from "./utils.js"

// A transaction whose session dies, or whose COMMIT fails, ends in a typed SqlError that keeps the server's
// error (@effect/sql's own withTransaction makes it a defect). Statements of one transaction take turns on its
// connection instead of queueing inside pg.

const run = <A, E>(effect: Effect.Effect<A, E, PgPool.PgPool | SqlClient.SqlClient>, extra = {}) =>
  Effect.provide(effect, PgPool.layer(options(suiteUrl(), { maxSize: 2, ...extra })))

const newTable = (sql: SqlClient.SqlClient) =>
  Effect.gen(function*() {
    const table = `t_tx_${Date.now()}_${Math.floor(Math.random() * 1e6)}`
    yield* sql`CREATE TABLE ${sql(table)} (x int)`
    return table
  })

const count = (sql: SqlClient.SqlClient, table: string) =>
  Effect.map(sql<{ n: string }>`SELECT count(*) AS n FROM ${sql(table)}`, (r) => Number(r[0].n))

/** Kills our transaction's backend and waits until the server and the client both know it is gone. */
const killed = (pid: number) =>
  Effect.gen(function*() {
    yield* admin(suiteUrl(), "SELECT pg_terminate_backend($1)", [pid])
    yield* waitFor(admin(suiteUrl(), "SELECT 1 FROM pg_stat_activity WHERE pid = $1", [pid]), (r) => r.length === 0)
    yield* Effect.sleep("50 millis") // the client reads the server's goodbye
  })

/** The exit is a typed SqlError (not a defect) whose cause is the lost session's error. */
const lostSession = (exit: Exit.Exit<unknown, unknown>) => {
  assert.isTrue(Exit.isFailure(exit))
  const cause = (exit as Exit.Failure<unknown, unknown>).cause
  assert.strictEqual(cause._tag, "Fail", `not a typed failure: ${Cause.pretty(cause)}`)
  const error = (cause as Cause.Fail<SqlError>).error
  assert.strictEqual(error._tag, "SqlError")
  assert.isTrue(PgPool.isConnectionFailure(error.cause), `cause: ${String(error.cause)}`)
}

const backendPid = (sql: SqlClient.SqlClient) =>
  Effect.map(sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`, (r) => r[0].pid)

describe("PgPool: transactions whose session dies", () => {
  it.live("killed during a statement: SqlError with the server's 57P01, caught by catchTag", () =>
    run(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const table = yield* newTable(sql)
      const exit = yield* Effect.exit(sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO ${sql(table)} VALUES (1)`
        const pid = yield* backendPid(sql)
        yield* Effect.fork(Effect.delay(admin(suiteUrl(), "SELECT pg_terminate_backend($1)", [pid]), "200 millis"))
        yield* sql`SELECT pg_sleep(5)`
      })))
      lostSession(exit)
      const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) as SqlError : undefined
      assert.strictEqual((error?.cause as { code?: string }).code, "57P01")
      const caught = yield* sql.withTransaction(Effect.zipRight(
        Effect.flatMap(backendPid(sql), killed),
        sql`SELECT 1`
      )).pipe(Effect.as("no"), Effect.catchTag("SqlError", () => Effect.succeed("caught")))
      assert.strictEqual(caught, "caught")
      assert.strictEqual(yield* count(sql, table), 0)
    })))

  it.live("killed while idle in the transaction: the next statement fails at once, keeping the 57P01", () =>
    run(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const table = yield* newTable(sql)
      const exit = yield* Effect.exit(sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO ${sql(table)} VALUES (1)`
        yield* killed(yield* backendPid(sql))
        yield* sql`INSERT INTO ${sql(table)} VALUES (2)`
      })))
      lostSession(exit)
      assert.include(Cause.pretty((exit as Exit.Failure<unknown, unknown>).cause), "connection was lost")
      assert.strictEqual(yield* count(sql, table), 0)
    })))

  it.live("killed just before COMMIT: the failed COMMIT is a typed SqlError, nothing is committed", () =>
    run(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const table = yield* newTable(sql)
      const exit = yield* Effect.exit(sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO ${sql(table)} VALUES (1)`
        yield* killed(yield* backendPid(sql))
      })))
      lostSession(exit)
      assert.strictEqual(yield* count(sql, table), 0)
      const stats = yield* PgPool.PgPool.stats
      assert.strictEqual(stats.inUse, 0)
    })))

  it.live("a COMMIT refused by the server (deferred constraint) is a typed SqlError with its SQLSTATE", () =>
    run(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const table = `t_tx_deferred_${Date.now()}`
      yield* sql`CREATE TABLE ${sql(table)} (x int UNIQUE DEFERRABLE INITIALLY DEFERRED)`
      const error = yield* Effect.flip(sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO ${sql(table)} VALUES (1)`
        yield* sql`INSERT INTO ${sql(table)} VALUES (1)`
      })))
      assert.strictEqual(error._tag, "SqlError")
      assert.strictEqual((error.cause as { code?: string }).code, "23505")
      assert.strictEqual(yield* count(sql, table), 0)
      // the session is fine: the server ended the transaction, the connection stays in the pool
      assert.strictEqual((yield* PgPool.PgPool.stats).destroyed, 0)
    })))
})

describe("PgPool: statements of one transaction take turns", () => {
  it.live("Effect.all with concurrency in a transaction: all run, one after the other, and pg queues nothing", () =>
    Effect.gen(function*() {
      const warnings: Array<string> = []
      const onWarning = (w: Error) => warnings.push(w.message)
      process.on("warning", onWarning)
      const result = yield* run(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        // pg warns (and pg 9 throws) when a query is handed to it while another waits in its queue
        return yield* sql.withTransaction(Effect.all([
          Effect.flatMap(sql`SELECT pg_sleep(0.1)`, () => backendPid(sql)),
          Effect.flatMap(sql`SELECT pg_sleep(0.05)`, () => backendPid(sql)),
          backendPid(sql),
          backendPid(sql)
        ], { concurrency: 3 }))
      })).pipe(Effect.ensuring(Effect.sync(() => process.off("warning", onWarning))))
      assert.strictEqual(new Set(result).size, 1)
      yield* Effect.sleep("10 millis") // warnings are emitted on the next tick
      assert.deepStrictEqual(warnings.filter((w) => w.includes("already executing a query")), [])
    }))

  it.live("a statement interrupted while it waits for its turn never runs, and its sibling is not cancelled", () =>
    run(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const table = yield* newTable(sql)
      yield* sql.withTransaction(Effect.gen(function*() {
        const first = yield* Effect.fork(sql`INSERT INTO ${sql(table)} SELECT 1 FROM pg_sleep(0.5)`)
        yield* Effect.sleep("100 millis")
        const second = yield* Effect.fork(sql`INSERT INTO ${sql(table)} VALUES (2)`)
        yield* Effect.sleep("50 millis")
        yield* Fiber.interrupt(second)
        yield* Fiber.join(first)
      }))
      const rows = yield* sql<{ x: number }>`SELECT x FROM ${sql(table)}`
      assert.deepStrictEqual(rows.map((r) => r.x), [1])
    })))

  it.live("a statement interrupted while it runs is cancelled; the next one waits for it and runs", () =>
    run(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const table = yield* newTable(sql)
      yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`SAVEPOINT before_sleep`
        const sleeping = yield* Effect.fork(sql`SELECT pg_sleep(30)`)
        yield* Effect.sleep("100 millis")
        yield* Fiber.interrupt(sleeping).pipe(Effect.timeout("5 seconds"))
        yield* sql`ROLLBACK TO SAVEPOINT before_sleep` // the cancel left the transaction aborted
        yield* sql`INSERT INTO ${sql(table)} VALUES (3)`
      }))
      const rows = yield* sql<{ x: number }>`SELECT x FROM ${sql(table)}`
      assert.deepStrictEqual(rows.map((r) => r.x), [3])
    })))
})

describe("PgPool: connectOnStart false", () => {
  it.live("a wrong database: the first query's SqlError message says why, not only its cause", () =>
    Effect.gen(function*() {
      const url = new URL(suiteUrl())
      url.pathname = "/no_such_database"
      const opts = options(url.toString(), { connectOnStart: false })
      const exit = yield* Effect.exit(Effect.provide(
        Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`),
        PgPool.layer(opts)
      ))
      assert.isTrue(Exit.isFailure(exit))
      const cause = (exit as Exit.Failure<unknown, SqlError>).cause
      const error = Cause.squash(cause) as SqlError
      assert.strictEqual(error._tag, "SqlError")
      assert.include(error.message, `database "no_such_database" does not exist`)
      assert.include(Cause.pretty(cause), `database "no_such_database" does not exist`)
    }))
})
