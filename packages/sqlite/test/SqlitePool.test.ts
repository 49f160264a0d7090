import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import Database from "better-sqlite3"
import { Cause, type Context, Deferred, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import type { Connection } from "../src/internal/connection.js"
import { SqlitePool } from "../src/index.js"
import { slowQuery, tempDir, waitFor } from "./utils.js"

/** Builds the pools and client on a file in a fresh temp dir, in the test's scope. */
const open = (options: Partial<SqlitePool.SqlitePoolConfig> = {}, file = "test.db") =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    const filename = path.join(dir, file)
    const context = yield* Layer.build(SqlitePool.layer({ filename, acquireTimeout: "10 seconds", ...options }))
    return { dir, filename, context, sql: Effect.provide(SqlClient.SqlClient, context) }
  })

const seed = (sql: SqlClient.SqlClient, rows: number) =>
  Effect.gen(function*() {
    yield* sql`CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER NOT NULL)`
    yield* sql.withTransaction(Effect.forEach(
      Array.from({ length: rows }, (_, i) => i + 1),
      (id) => sql`INSERT INTO items (id, name, n) VALUES (${id}, ${`item-${id}`}, 0)`,
      { discard: true }
    ))
  })

const stats = (context: Context.Context<SqlitePool.Readers | SqlitePool.Writer>) =>
  Effect.all([
    Effect.provide(SqlitePool.Readers.stats, context),
    Effect.provide(SqlitePool.Writer.stats, context)
  ])

const failureOf = <A>(exit: Exit.Exit<A, SqlError>) => {
  assert(Exit.isFailure(exit), "expected a failure")
  const error = Cause.failureOption(exit.cause)
  assert(error._tag === "Some", `expected a typed failure, got ${Cause.pretty(exit.cause)}`)
  return error.value
}

for (const threads of ["main", "worker"] as const) {
  describe(`threads: ${threads}`, () => {
    it.live("concurrent readers and a writer: reads on readers, writes through the writer, no SQLITE_BUSY", () =>
      Effect.scoped(Effect.gen(function*() {
        const { context, sql: client } = yield* open({ threads, maxSize: 2 })
        const sql = yield* client
        yield* seed(sql, 100)
        const [readersBefore, writerBefore] = yield* stats(context)
        // 400 operations by 100 fibers at once: 1 in 4 an update, the rest point reads
        const results = yield* Effect.forEach(Array.from({ length: 400 }, (_, i) => i), (i) =>
          i % 4 === 0
            ? Effect.as(sql`UPDATE items SET n = n + 1 WHERE id = ${(i % 100) + 1}`, "write")
            : Effect.map(sql<{ name: string }>`SELECT name FROM items WHERE id = ${(i % 100) + 1}`, (rows) => {
              assert.strictEqual(rows[0].name, `item-${(i % 100) + 1}`)
              return "read"
            }), { concurrency: 100 })
        assert.strictEqual(results.filter((r) => r === "write").length, 100)
        const [total] = yield* sql<{ s: number }>`SELECT sum(n) AS s FROM items`
        assert.strictEqual(total.s, 100)
        const [readers, writer] = yield* stats(context)
        const reads = readers.acquired - readersBefore.acquired
        const writes = writer.acquired - writerBefore.acquired
        assert.strictEqual(writes, 100)
        if (threads === "worker") assert.strictEqual(reads, 301) // 300 reads and the sum
        else {
          // on the main thread one borrow serves the reads of a scheduler turn, and is given back after
          assert.isAtLeast(reads, 1)
          assert.isBelow(reads, 301)
          yield* waitFor(stats(context), ([r]) => r.inUse === 0)
        }
        assert.strictEqual(writer.maxSize, 1)
        assert.isAtMost(readers.total, 2)
        // callers that found the first worker busy had a second one opened (it may still be starting)
        if (threads === "worker") assert.strictEqual(readers.total + readers.pending, 2)
      })))

    it.live("a transaction runs on the writer: its reads see its writes, others see them after commit", () =>
      Effect.scoped(Effect.gen(function*() {
        const { context, sql: client } = yield* open({ threads })
        const sql = yield* client
        yield* seed(sql, 3)
        const [, writerBefore] = yield* stats(context)
        const count = sql<{ c: number }>`SELECT count(*) AS c FROM items`.pipe(Effect.map((rows) => rows[0].c))
        // another fiber, outside the transaction (forked before it, so it does not inherit it): reads on a reader
        const go = yield* Deferred.make<void>()
        const other = yield* Effect.fork(Effect.zipRight(Deferred.await(go), count))
        const inside = yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO items (id, name, n) VALUES (4, 'four', 0)`
          const mine = yield* count
          yield* Deferred.succeed(go, undefined)
          const theirs = yield* Fiber.join(other)
          return { mine, theirs }
        }))
        assert.deepStrictEqual(inside, { mine: 4, theirs: 3 })
        assert.strictEqual(yield* count, 4)
        // a failed transaction rolls back
        const failed = yield* sql.withTransaction(Effect.zipRight(
          sql`INSERT INTO items (id, name, n) VALUES (5, 'five', 0)`,
          Effect.fail("boom" as const)
        )).pipe(Effect.flip)
        assert.strictEqual(failed, "boom")
        assert.strictEqual(yield* count, 4)
        // a statement error is an SqlError and leaves the writer usable
        const duplicate = yield* Effect.exit(sql`INSERT INTO items (id, name, n) VALUES (1, 'dup', 0)`)
        const error = failureOf(duplicate)
        assert.strictEqual(error._tag, "SqlError")
        assert.match(String((error as SqlError).cause), /UNIQUE constraint failed/)
        const [, writer] = yield* stats(context)
        assert.strictEqual(writer.total, 1)
        assert.strictEqual(writer.created - writerBefore.created, 0) // the same writer throughout
      })))
  })
}

describe("main thread", () => {
  it.live("reads wait for a reader held elsewhere (one borrow for all of them), then run on it", () =>
    Effect.gen(function*() {
      const { context, sql: client } = yield* open({ threads: "main", maxSize: 1 })
      const sql = yield* client
      yield* seed(sql, 10)
      const readers = Effect.provide(SqlitePool.Readers.stats, context)
      yield* waitFor(readers, (s) => s.inUse === 0)
      const held = yield* Scope.make()
      yield* Effect.provide(Scope.extend(SqlitePool.Readers.get, held), context)
      const fibers = yield* Effect.forEach(
        Array.from({ length: 10 }, (_, i) => i + 1),
        (id) => Effect.fork(sql<{ name: string }>`SELECT name FROM items WHERE id = ${id}`),
        { concurrency: "unbounded" }
      )
      // one borrow waits in the pool's queue for all ten statements
      const waiting = yield* waitFor(readers, (s) => s.waiting === 1)
      assert.strictEqual(waiting.inUse, 1)
      yield* Effect.sleep("20 millis")
      for (const fiber of fibers) assert.isUndefined(fiber.unsafePoll() ?? undefined)
      yield* Scope.close(held, Exit.void)
      const names = yield* Effect.forEach(fibers, Fiber.join)
      assert.deepStrictEqual(names.map((rows) => rows[0].name), Array.from({ length: 10 }, (_, i) => `item-${i + 1}`))
      const after = yield* waitFor(readers, (s) => s.inUse === 0 && s.waiting === 0)
      assert.strictEqual(after.total, 1)
    }).pipe(Effect.scoped))

  it.live("a read interrupted while it waits for its reader leaves nothing behind", () =>
    Effect.gen(function*() {
      const { context, sql: client } = yield* open({ threads: "main", maxSize: 1 })
      const sql = yield* client
      yield* seed(sql, 1)
      const readers = Effect.provide(SqlitePool.Readers.stats, context)
      yield* waitFor(readers, (s) => s.inUse === 0)
      const held = yield* Scope.make()
      yield* Effect.provide(Scope.extend(SqlitePool.Readers.get, held), context)
      const fiber = yield* Effect.fork(sql`SELECT name FROM items WHERE id = 1`)
      yield* waitFor(readers, (s) => s.waiting === 1)
      yield* Fiber.interrupt(fiber)
      yield* Scope.close(held, Exit.void)
      assert.deepStrictEqual(yield* sql`SELECT name FROM items WHERE id = 1`, [{ name: "item-1" }])
      const after = yield* waitFor(readers, (s) => s.inUse === 0 && s.waiting === 0)
      assert.strictEqual(after.destroyed, 0)
    }).pipe(Effect.scoped))

  it.live("a transaction waiting for the writer gets it while other fibers keep writing", () =>
    Effect.gen(function*() {
      const { sql: client } = yield* open({ threads: "main" })
      const sql = yield* client
      yield* seed(sql, 20)
      // (no timer here: fibers looping on synchronous statements keep Node from its timers)
      let committed = false
      let writes = 0
      const running = yield* Deferred.make<void>()
      const writers = yield* Effect.fork(Effect.forEach(Array.from({ length: 20 }, (_, i) => i + 1), (id) =>
        Effect.whileLoop({
          while: () => !committed,
          body: () => sql`UPDATE items SET n = n + 1 WHERE id = ${id}`,
          step: () => {
            if (++writes === 100) Deferred.unsafeDone(running, Exit.void)
          }
        }), { concurrency: "unbounded", discard: true }))
      yield* Deferred.await(running)
      const before = writes
      yield* sql.withTransaction(sql`INSERT INTO items (id, name, n) VALUES (21, 'twenty-one', 0)`)
      committed = true
      const meanwhile = writes - before
      yield* Fiber.join(writers)
      // the writer is borrowed per statement (FIFO): the transaction waited for the writes queued before it
      assert.isBelow(meanwhile, 100, `${meanwhile} writes went first`)
      const [row] = yield* sql<{ s: number; c: number }>`SELECT sum(n) AS s, count(*) AS c FROM items`
      assert.deepStrictEqual(row, { s: writes, c: 21 })
    }).pipe(Effect.scoped))

  it.live("a pool failure reaches the reads waiting for their reader", () =>
    Effect.gen(function*() {
      const { context, sql: client } = yield* open({ threads: "main" })
      const sql = yield* client
      yield* seed(sql, 1)
      yield* waitFor(Effect.provide(SqlitePool.Readers.stats, context), (s) => s.inUse === 0)
      yield* Effect.provide(SqlitePool.Readers.shutdown(), context)
      const error = failureOf(yield* Effect.exit(sql`SELECT name FROM items WHERE id = 1`))
      assert.strictEqual(error._tag, "SqlError")
      assert.strictEqual(((error as SqlError).cause as { _tag: string })._tag, "PoolClosed")
    }).pipe(Effect.scoped))
})

describe("worker threads", () => {
  it.live("interrupting a long query frees its caller at once; the worker is replaced", () =>
    Effect.scoped(Effect.gen(function*() {
      const { context, sql: client } = yield* open({ threads: "worker", maxSize: 1 })
      const sql = yield* client
      const fiber = yield* Effect.fork(sql.unsafe(slowQuery(10_000_000)))
      yield* waitFor(Effect.provide(SqlitePool.Readers.stats, context), (s) => s.inUse === 1)
      yield* Effect.sleep("50 millis")
      const started = Date.now()
      yield* Fiber.interrupt(fiber)
      assert.isBelow(Date.now() - started, 500, "the caller is not kept until SQLite finishes")
      // the next read gets a new worker, not the one still busy
      const rows = yield* sql<{ one: number }>`SELECT 1 AS one`
      assert.deepStrictEqual(rows, [{ one: 1 }])
      const readers = yield* Effect.provide(SqlitePool.Readers.stats, context)
      assert.strictEqual(readers.created, 2)
      assert.strictEqual(readers.destroyed, 1)
    })))

  it.live("a worker that crashes mid-query fails its caller with WorkerCrashed and is replaced", () =>
    Effect.scoped(Effect.gen(function*() {
      const { context, sql: client } = yield* open({ threads: "worker", maxSize: 1 })
      const sql = yield* client
      // the only reader, as the pool lends it
      const conn = yield* Effect.scoped(Effect.provide(SqlitePool.Readers.get, context)) as Effect.Effect<Connection>
      const fiber = yield* Effect.fork(Effect.exit(sql.unsafe(slowQuery(1_500_000))))
      yield* waitFor(Effect.provide(SqlitePool.Readers.stats, context), (s) => s.inUse === 1)
      yield* Effect.promise(() => conn.worker!.terminate()) // as if the thread died
      const error = failureOf(yield* Fiber.join(fiber))
      assert.strictEqual(error._tag, "SqlError")
      const cause = (error as SqlError).cause
      assert.instanceOf(cause, SqlitePool.WorkerCrashed)
      assert.match((cause as SqlitePool.WorkerCrashed).message, /test\.db.*worker thread exited/)
      assert.deepStrictEqual(yield* sql`SELECT 2 AS two`, [{ two: 2 }])
      const readers = yield* Effect.provide(SqlitePool.Readers.stats, context)
      assert.strictEqual(readers.created, 2)
    })))

  it.live("readers on workers run at the same time, and the event loop keeps running meanwhile", () =>
    Effect.scoped(Effect.gen(function*() {
      const { context, sql: client } = yield* open({ threads: "worker", maxSize: 2 })
      const sql = yield* client
      const both = yield* Effect.fork(
        Effect.all([sql.unsafe(slowQuery(3_000_000)), sql.unsafe(slowQuery(3_000_000))], { concurrency: 2 })
      )
      let ticks = 0
      const tick = Effect.zipRight(Effect.sleep("5 millis"), Effect.sync(() => ticks++))
      const ticker = yield* Effect.fork(Effect.forever(tick))
      // both readers busy at once, while this fiber and the ticker go on running on the main thread
      const busy = yield* waitFor(Effect.provide(SqlitePool.Readers.stats, context), (s) => s.inUse === 2)
      assert.strictEqual(busy.inUse, 2)
      const during = ticks
      const results = yield* Fiber.join(both)
      yield* Fiber.interrupt(ticker)
      assert.deepStrictEqual(results, [[{ n: 3_000_000 }], [{ n: 3_000_000 }]])
      assert.isAbove(ticks, during, "timers fired while the queries ran")
    })))
})

describe("bad files are a ConnectionError that names the file", () => {
  const fails = (filename: string, options: Partial<SqlitePool.SqlitePoolConfig> = {}) =>
    Effect.flip(Effect.scoped(Layer.build(SqlitePool.layer({ filename, ...options }))))

  for (const threads of ["main", "worker"] as const) {
    it.live(`a path that cannot be opened (${threads})`, () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir
        const missing = path.join(dir, "no-such-dir", "x.db")
        const e1 = yield* fails(missing, { threads })
        assert.strictEqual(e1._tag, "ConnectionError")
        assert.include(e1.message, `"${missing}"`)
        assert.include(e1.message, "directory does not exist")
        const e2 = yield* fails(dir, { threads }) // a directory
        assert.strictEqual(e2._tag, "ConnectionError")
        assert.include(e2.message, `cannot open SQLite database "${dir}"`)
      })))

    it.live(`a file that is not a database (${threads})`, () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir
        const file = path.join(dir, "notes.txt")
        fs.writeFileSync(file, "these are not the pages you are looking for ".repeat(200))
        const error = yield* fails(file, { threads })
        assert.strictEqual(error._tag, "ConnectionError")
        assert.include(error.message, `"${file}" is not an SQLite database`)
      })))
  }

  it.live("a read-only directory, where WAL cannot create its files", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const file = path.join(dir, "locked.db")
      new Database(file).exec("CREATE TABLE t (x)").close() // a valid database, in rollback-journal mode
      // root ignores permission bits: make the directory immutable instead (chattr), else read-only (chmod)
      const root = process.getuid?.() === 0
      yield* Effect.acquireRelease(
        Effect.sync(() => root ? execFileSync("chattr", ["+i", dir]) : fs.chmodSync(dir, 0o555)),
        () => Effect.sync(() => root ? execFileSync("chattr", ["-i", dir]) : fs.chmodSync(dir, 0o755))
      )
      for (const threads of ["main", "worker"] as const) {
        const error = yield* fails(file, { threads })
        assert.strictEqual(error._tag, "ConnectionError")
        assert.include(error.message, `cannot put SQLite database "${file}" in WAL mode`)
        assert.include(error.message, "directory must be writable")
      }
    })))

  it.live("a bad pool option is InvalidConfig, before any file is touched", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const error = yield* fails(path.join(dir, "x.db"), { maxSize: 0 })
      assert.strictEqual(error._tag, "InvalidConfig")
      assert.isFalse(fs.existsSync(path.join(dir, "x.db")))
    })))
})
