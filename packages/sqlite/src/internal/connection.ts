import { ConnectionError } from "@connection-pool/core/PoolError"
import { SqlError } from "@effect/sql/SqlError"
import Database from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { Worker } from "node:worker_threads"
import { WorkerCrashed } from "./errors.js"

/** How every connection opens the file. @internal */
export interface OpenOptions {
  readonly filename: string
  readonly readonly: boolean
  readonly fileMustExist: boolean
  readonly wal: boolean
  /** Milliseconds SQLite waits on a lock held by another process before SQLITE_BUSY. */
  readonly busyTimeout: number
  /** Run on every connection after it opens, as `db.pragma(p)`. */
  readonly pragmas: ReadonlyArray<string>
  readonly prepareCacheSize: number
}

/** One statement for a connection to run. @internal */
export interface Request {
  readonly sql: string
  readonly params: ReadonlyArray<unknown>
  /** rows: the rows (none for a statement that returns none); raw: `RunResult` for those; values: rows as arrays */
  readonly mode: "rows" | "raw" | "values"
  readonly safeIntegers: boolean
  readonly unprepared: boolean
}

export type Done = (exit: Exit.Exit<any, SqlError>) => void

/** A reader or the writer: a better-sqlite3 database on the main thread or on a worker thread of its own. @internal */
export interface Connection {
  readonly id: number
  readonly filename: string
  readonly thread: "main" | "worker"
  /** Starts `request`; `done` is called once. Returns what cancels it (a worker is terminated), if anything can. */
  readonly run: (request: Request, done: Done) => Effect.Effect<void> | void
  /** Main-thread connections: runs `request` now. */
  readonly execute?: ((request: Request) => Exit.Exit<any, SqlError>) | undefined
  /** False once the connection can serve no one (its worker exited). */
  readonly usable: () => boolean
  readonly close: Effect.Effect<void>
  /** The thread a worker connection runs on. */
  readonly worker?: Worker | undefined
}

let ids = 0

const failed = (cause: unknown) => new SqlError({ cause, message: "Failed to execute statement" })

type Step = "open" | "read" | "wal" | "pragmas"

/** Why an open failed, in words that name the file. @internal */
export const describe = (step: Step, error: unknown, options: OpenOptions): ConnectionError => {
  const e = (typeof error === "object" && error !== null ? error : {}) as { code?: string; message?: string }
  const file = `"${options.filename}"`
  const message = e.message ?? String(error)
  let reason: string
  switch (step) {
    case "open":
      reason = /directory does not exist/i.test(message)
        ? `cannot open SQLite database ${file}: its directory does not exist`
        : `cannot open SQLite database ${file}: ${message}` +
          (e.code === "SQLITE_CANTOPEN" ? " (is the path a directory, or not readable/writable?)" : "")
      break
    case "read":
      reason = e.code === "SQLITE_NOTADB"
        ? `${file} is not an SQLite database (${message})`
        : `cannot read SQLite database ${file}: ${message}`
      break
    case "wal":
      reason = e.code === "NOT_WAL"
        ? `SQLite database ${file} is not in WAL mode, which readers need (open it with wal: true first)`
        : `cannot put SQLite database ${file} in WAL mode: ${message}; WAL creates ${options.filename}-wal and ` +
          `${options.filename}-shm beside it, so its directory must be writable (or open it with wal: false)`
      break
    case "pragmas":
      reason = `a pragma failed on SQLite database ${file}: ${message}`
  }
  return new ConnectionError({ reason, cause: error })
}

/** Opens `options.filename` on this thread, the way worker.js does on its own. @internal */
export const openDatabase = (options: OpenOptions): Database.Database => {
  let step: Step = "open"
  let db: Database.Database | undefined
  try {
    db = new Database(options.filename, {
      readonly: options.readonly,
      fileMustExist: options.fileMustExist,
      timeout: options.busyTimeout
    })
    step = "read"
    db.pragma("schema_version") // a file that is not a database fails here, not at the first query
    if (options.wal) {
      step = "wal"
      if (options.readonly) {
        if (db.pragma("journal_mode", { simple: true }) !== "wal") {
          throw Object.assign(new Error("not in WAL mode"), { code: "NOT_WAL" })
        }
      } else db.pragma("journal_mode = WAL")
    }
    step = "pragmas"
    for (const pragma of options.pragmas) db.pragma(pragma)
    return db
  } catch (error) {
    try {
      db?.close()
    } catch {
      // already closed
    }
    throw describe(step, error, options)
  }
}

/** A bounded map of prepared statements: the oldest goes first. */
const statementCache = (db: Database.Database, capacity: number) => {
  const cache = new Map<string, Database.Statement>()
  return (sql: string): Database.Statement => {
    let statement = cache.get(sql)
    if (statement !== undefined) return statement
    statement = db.prepare(sql)
    if (cache.size >= capacity) cache.delete(cache.keys().next().value!)
    cache.set(sql, statement)
    return statement
  }
}

/** Runs `request` on `statement`, as worker.js does. */
const execute = (statement: Database.Statement, request: Request): unknown => {
  statement.safeIntegers(request.safeIntegers)
  if (!statement.reader) {
    const info = statement.run(...request.params)
    return request.mode === "raw" ? info : []
  }
  if (request.mode !== "values") return statement.all(...request.params)
  statement.raw(true)
  try {
    return statement.all(...request.params)
  } finally {
    statement.raw(false)
  }
}

/** A connection on the main thread: statements run synchronously (and block the event loop while they do). @internal */
export const connectMain = (options: OpenOptions): Effect.Effect<Connection, ConnectionError> =>
  Effect.try({
    try: () => {
      const db = openDatabase(options)
      const prepare = statementCache(db, options.prepareCacheSize)
      const run = (request: Request): Exit.Exit<any, SqlError> => {
        try {
          return Exit.succeed(execute(request.unprepared ? db.prepare(request.sql) : prepare(request.sql), request))
        } catch (cause) {
          return Exit.fail(failed(cause))
        }
      }
      const connection: Connection = {
        id: ++ids,
        filename: options.filename,
        thread: "main",
        run: (request, done) => done(run(request)),
        execute: run,
        usable: () => db.open,
        close: Effect.sync(() => {
          try {
            db.close()
          } catch {
            // closing never fails the pool
          }
        })
      }
      return connection
    },
    catch: (error) =>
      error instanceof ConnectionError
        ? error
        : new ConnectionError({ reason: `cannot open SQLite database "${options.filename}"`, cause: error })
  })

const workerUrl = new URL("./worker.js", import.meta.url)

interface Reply {
  readonly ok: boolean
  readonly value?: unknown
  readonly error?: { readonly name?: string; readonly message: string; readonly code?: string }
}

/** The worker's error as an Error again, with its SQLite code. */
const revive = (e: NonNullable<Reply["error"]>): Error => Object.assign(new Error(e.message), e)

/**
 * A connection on a worker thread of its own. A statement is a message there and back; interrupting it terminates
 * the worker (SQLite cannot be stopped from another thread), so the pool replaces it. A worker that exits while a
 * statement runs fails that statement with `WorkerCrashed`. @internal
 */
export const connectWorker = (options: OpenOptions): Effect.Effect<Connection, ConnectionError> =>
  Effect.async<Connection, ConnectionError>((resume) => {
    const id = ++ids
    const worker = new Worker(workerUrl, {
      workerData: { open: options, prepareCacheSize: options.prepareCacheSize },
      stdout: false,
      stderr: false
    })
    let ready = false
    let exited = false
    let pending: Done | undefined
    let exitWaiters: Array<() => void> = []
    const fail = (why: string) => {
      const done = pending
      pending = undefined
      if (done !== undefined) {
        done(Exit.fail(failed(new WorkerCrashed({ filename: options.filename, reason: why }))))
      }
    }
    worker.on("message", (message: Reply & { ready?: boolean }) => {
      if (!ready) {
        if (message.ready) {
          ready = true
          return resume(Effect.succeed(connection))
        }
        const e = message.error as { step: Step } & NonNullable<Reply["error"]>
        void worker.terminate()
        return resume(Effect.fail(describe(e.step, revive(e), options)))
      }
      const done = pending
      pending = undefined
      if (done === undefined) return
      done(message.ok ? Exit.succeed(message.value) : Exit.fail(failed(revive(message.error!))))
    })
    worker.on("error", (error) => {
      if (!ready) {
        ready = true // no second resume from "exit"
        return resume(Effect.fail(
          new ConnectionError({
            reason: `SQLite worker for "${options.filename}" failed to start: ${error.message}`,
            cause: error
          })
        ))
      }
      fail(`its worker thread failed: ${error.message}`)
    })
    worker.on("exit", (code) => {
      exited = true
      for (const waiter of exitWaiters) waiter()
      exitWaiters = []
      if (!ready) {
        ready = true
        return resume(Effect.fail(
          new ConnectionError({ reason: `SQLite worker for "${options.filename}" exited (code ${code}) while opening` })
        ))
      }
      fail(`its worker thread exited (code ${code})`)
    })
    const untilExit = Effect.async<void>((resume) => {
      if (exited) return resume(Effect.void)
      exitWaiters.push(() => resume(Effect.void))
    })
    // terminate() takes effect only when SQLite hands control back to JavaScript: the statement in flight runs to
    // its end first (better-sqlite3 cannot interrupt it). So nobody waits for the thread to exit: the caller goes
    // at once, the connection is never lent again, and the thread ends when SQLite returns.
    let terminating = false
    const terminate = Effect.sync(() => {
      terminating = true
      pending = undefined // its caller has gone
      void worker.terminate()
    })
    const connection: Connection = {
      id,
      filename: options.filename,
      thread: "worker",
      worker,
      run: (request, done) => {
        if (exited || terminating) {
          const reason = "its worker thread had exited"
          return done(Exit.fail(failed(new WorkerCrashed({ filename: options.filename, reason }))))
        }
        pending = done
        worker.postMessage(request)
        return terminate
      },
      usable: () => !exited && !terminating,
      close: Effect.suspend(() => {
        if (exited || terminating) return terminate
        worker.postMessage({ close: true })
        // a worker that does not close within a second is terminated
        return Effect.timeout(untilExit, "1 second").pipe(Effect.catchAll(() => terminate))
      })
    }
    return terminate
  })
