import type * as ConnectionPool from "@connection-pool/core/ConnectionPool"
import type { PoolError } from "@connection-pool/core/PoolError"
import type * as Reactivity from "@effect/experimental/Reactivity"
import * as Client from "@effect/sql/SqlClient"
import type { Connection as SqlConnection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import type Database from "better-sqlite3"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Connection, Request } from "./connection.js"
import * as Lease from "./lease.js"

/** What @effect/sql-sqlite-node's client options add to ours. @internal */
export interface ClientOptions {
  readonly spanAttributes?: Record<string, unknown> | undefined
  readonly transformResultNames?: ((str: string) => string) | undefined
  readonly transformQueryNames?: ((str: string) => string) | undefined
}

type Transform = (<A extends object>(row: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
type Pool = ConnectionPool.ConnectionPool<Connection>

/** Where the readers and the writer run. @internal */
export interface Threads {
  readonly readers: "main" | "worker"
  readonly writer: "main" | "worker"
}

const toSqlError = (e: SqlError | PoolError): SqlError =>
  e._tag === "SqlError" ? e : new SqlError({ cause: e, message: "Failed to acquire connection" })

/**
 * Which statements may go to a reader: those that return rows and change nothing (`SELECT`, `WITH … SELECT`).
 * SQLite says so itself (`sqlite3_stmt_readonly`) when a connection of the main thread prepares the statement
 * (never runs it). Answers are kept per SQL text; a statement that does not prepare (a table not created yet)
 * goes to the writer, which reports the error, and is asked again next time. @internal
 */
export const classifier = (db: Database.Database, capacity = 1000) => {
  const known = new Map<string, boolean>()
  return (sql: string): boolean => {
    const cached = known.get(sql)
    if (cached !== undefined) return cached
    let read: boolean
    try {
      const statement = db.prepare(sql)
      read = statement.reader && statement.readonly
    } catch {
      return false
    }
    if (known.size >= capacity) known.delete(known.keys().next().value!)
    known.set(sql, read)
    return read
  }
}

/** Steps a borrow of the writer takes from its start to the connection's release, with room to spare. */
const BORROW_OPS = 64

const statement = (request: Request) => (conn: Connection, done: Parameters<Connection["run"]>[1]) =>
  conn.run(request, done)

/**
 * @effect/sql's `Connection` on our pools: outside a transaction each statement borrows a reader if it only reads
 * and the writer otherwise; `pinned` (a transaction, `sql.reserve`) runs everything on the writer it holds.
 */
class PooledConnection implements SqlConnection {
  constructor(
    readonly readers: Pool,
    readonly writer: Pool,
    readonly isRead: (sql: string) => boolean,
    readonly threads: Threads,
    readonly pinned: Connection | undefined,
    /** Main-thread readers, lent for a scheduler turn at a time (see lease.ts). */
    readonly lessor: Lease.Lessor | undefined
  ) {}

  private run(sql: string, params: ReadonlyArray<unknown>, mode: Request["mode"], unprepared = false) {
    return Effect.withFiberRuntime<any, SqlError>((fiber) => {
      const request: Request = {
        sql,
        params,
        mode,
        safeIntegers: Context.get(fiber.currentContext, Client.SafeIntegers),
        unprepared
      }
      const pinned = this.pinned
      if (pinned !== undefined) return Effect.async<any, SqlError>((resume) => pinned.run(request, resume))
      const read = this.isRead(sql)
      if (read) {
        if (this.lessor !== undefined) return this.lessor.use((conn) => conn.execute!(request))
        return Effect.mapError(this.readers.withConnectionCallback(statement(request)), toSqlError)
      }
      const borrow = Effect.mapError(this.writer.withConnectionCallback(statement(request)), toSqlError)
      if (this.threads.writer === "worker") return borrow
      // On the main thread the statement runs inside its `start` and calls `done` there, so the writer is
      // borrowed, used and given back within one step of the fiber (`withConnectionCallback`'s synchronous
      // path): no asynchronous step (one would hide the fiber's running time from effect's scheduler, which then
      // never yields it) and no yield while it is held. Yielding while holding the writer would queue every other
      // writer, and the queue, once formed, stays: each release hands over to a waiter that has to be woken. A
      // fiber this close to its yield point yields first all the same.
      const budget = fiber.getFiberRef(FiberRef.currentMaxOpsBeforeYield) - BORROW_OPS
      return fiber.currentOpCount > budget ? Effect.zipRight(Effect.yieldNow(), borrow) : borrow
    })
  }

  execute(sql: string, params: ReadonlyArray<unknown>, transformRows: Transform) {
    const rows = this.run(sql, params, "rows")
    return transformRows ? Effect.map(rows, transformRows) : rows
  }
  executeRaw(sql: string, params: ReadonlyArray<unknown>) {
    return this.run(sql, params, "raw")
  }
  executeValues(sql: string, params: ReadonlyArray<unknown>) {
    return this.run(sql, params, "values")
  }
  executeUnprepared(sql: string, params: ReadonlyArray<unknown>, transformRows: Transform) {
    const rows = this.run(sql, params, "rows", true)
    return transformRows ? Effect.map(rows, transformRows) : rows
  }
  executeStream(sql: string, params: ReadonlyArray<unknown>, transformRows: Transform) {
    // better-sqlite3 iterates synchronously, so a cursor would hold a connection across the caller's pulls: the
    // rows are read at once and streamed from memory
    return Stream.flatMap(Stream.fromEffect(this.execute(sql, params, transformRows)), Stream.fromIterable)
  }
}

/** An `SqlClient` on a pool of readers and a pool of one writer. @internal */
export const make = (
  readers: Pool,
  writer: Pool,
  isRead: (sql: string) => boolean,
  threads: Threads,
  options: ClientOptions
): Effect.Effect<Client.SqlClient, never, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const lessor = threads.readers === "main" ? yield* Lease.make(readers, toSqlError) : undefined
    const unpinned = new PooledConnection(readers, writer, isRead, threads, undefined, lessor)
    const reserve: Effect.Effect<SqlConnection, SqlError, Scope.Scope> = Effect.map(
      Effect.mapError(
        writer.get,
        (e) => new SqlError({ cause: e, message: "Failed to acquire connection for transaction" })
      ),
      (conn) => new PooledConnection(readers, writer, isRead, threads, conn, undefined)
    )
    return yield* Client.make({
      acquirer: Effect.succeed(unpinned),
      transactionAcquirer: reserve,
      compiler: Statement.makeCompilerSqlite(options.transformQueryNames),
      spanAttributes: [
        ...(options.spanAttributes ? Object.entries(options.spanAttributes) : []),
        ["db.system.name", "sqlite"]
      ],
      transformRows: options.transformResultNames
        ? Statement.defaultTransforms(options.transformResultNames).array
        : undefined
    })
  })
