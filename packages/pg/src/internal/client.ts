import type * as ConnectionPool from "@connection-pool/core/ConnectionPool"
import type { PoolError } from "@connection-pool/core/PoolError"
import type * as Reactivity from "@effect/experimental/Reactivity"
import * as Client from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import type { Custom } from "@effect/sql/Statement"
import * as Statement from "@effect/sql/Statement"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Arr from "effect/Array"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as RcRef from "effect/RcRef"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type pg from "pg"
import Cursor from "pg-cursor"
import * as driver from "./driver.js"
import * as session from "./session.js"

/** What @effect/sql-pg's PgClient options add to ours. @internal */
export interface ClientOptions {
  readonly spanAttributes?: Record<string, unknown> | undefined
  readonly transformResultNames?: ((str: string) => string) | undefined
  readonly transformQueryNames?: ((str: string) => string) | undefined
  readonly transformJson?: boolean | undefined
}

type Transform = (<A extends object>(row: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined

// the custom fragment `sql.json(...)` builds; PgClient.makeCompiler knows it by this kind
interface PgJson extends Custom<"PgJson", unknown> {}
const PgJson = Statement.custom<PgJson>("PgJson")

const failed = (message: string) => (cause: unknown) => new SqlError({ cause, message })

/** The pool's own failures (no connection) become SqlErrors that keep them as `cause` and say why. */
const toSqlError = (what: string) => (e: SqlError | PoolError): SqlError =>
  e._tag === "SqlError" ? e : new SqlError({ cause: e, message: `${what}: ${e.message}` })
const acquireFailed = toSqlError("Failed to acquire connection")

/** A statement that was not sent: its pinned session is already known to be gone. */
const lostSession = (lost: unknown) =>
  new SqlError({
    cause: lost,
    message: `Failed to execute statement: the connection was lost (${(lost as Error | undefined)?.message ?? lost})`
  })

interface Query {
  readonly text: string
  readonly values?: ReadonlyArray<unknown> | undefined
  readonly rowMode?: "array" | undefined
}

/** Hands one statement to pg, which calls `callback` once. */
const submit = (client: pg.Client, query: Query, callback: (error: Error | null, result: pg.QueryResult) => void) => {
  // text and values as arguments where possible: pg copies a config object, property by property, on every query
  if (query.rowMode === undefined) client.query(query.text, query.values as Array<unknown>, callback)
  else client.query({ text: query.text, values: query.values as Array<unknown>, rowMode: query.rowMode }, callback)
}

const statementExit = (error: Error | null, result: pg.QueryResult): Exit.Exit<pg.QueryResult, SqlError> =>
  error ? Exit.fail(new SqlError({ cause: error, message: "Failed to execute statement" })) : Exit.succeed(result)

/**
 * Starts one statement on `client` and calls `done` with pg's result; returns what cancels it on the server. In
 * the callback form that `ConnectionPool.withConnectionCallback` takes. Rows are transformed afterwards, by the
 * caller: a transform that throws is the caller's defect, and the connection, which did nothing wrong, goes back.
 * (A connection-class failure has marked the client lost before `done` runs, so it is not lent again.)
 */
const start = (query: Query) =>
(client: pg.Client, done: (exit: Exit.Exit<pg.QueryResult, SqlError>) => void): Effect.Effect<void> => {
  submit(client, query, (error, result) => done(statementExit(error, result)))
  return Effect.suspend(() => driver.cancel(client)) // built only when interrupted
}

/** Runs one statement on a client of its own (the listener). Interrupting it cancels it on the server. */
const run = <A>(client: pg.Client, query: Query, map: (result: pg.QueryResult) => A) => {
  const begin = start(query)
  return Effect.map(Effect.async<pg.QueryResult, SqlError>((resume) => begin(client, resume)), map)
}

/**
 * Runs one statement on a pinned client. Interrupted while it runs: it is cancelled on the server, and the
 * interruption completes only once pg has handed it back, so the next statement never meets it (nor its cancel).
 */
const runPinned = (client: pg.Client, query: Query): Effect.Effect<pg.QueryResult, SqlError> =>
  Effect.async<pg.QueryResult, SqlError>((resume) => {
    const lost = session.lostError(client)
    if (lost !== undefined) return resume(Effect.fail(lostSession(lost)))
    let settled = false
    let onSettled: (() => void) | undefined
    submit(client, query, (error, result) => {
      settled = true
      resume(statementExit(error, result))
      onSettled?.()
    })
    return Effect.zipRight(
      driver.cancel(client),
      Effect.async<void>((back) => {
        if (settled) return back(Effect.void)
        onSettled = () => back(Effect.void)
      }).pipe(
        Effect.timeoutOption("5 seconds"),
        Effect.flatMap((ended) =>
          ended._tag === "Some"
            ? Effect.void
            : Effect.sync(() => driver.markBroken(client, new Error("a cancelled statement did not end")))
        )
      )
    )
  })

const rows = (result: pg.QueryResult | Array<pg.QueryResult>) =>
  Array.isArray(result) ? result.map((r) => r.rows ?? []) : result.rows ?? []

/**
 * @effect/sql's `Connection` on our pool: each statement borrows a connection for itself, unless `pinned` (a
 * transaction, or `sql.reserve`) holds one for a whole scope. A statement that waits for a connection is started
 * by the release that frees one (`withConnectionCallback`), in the releasing fiber; its caller wakes once.
 *
 * Statements on a pinned connection take turns (one permit), rather than queueing inside pg: a statement
 * interrupted while it waits for its turn simply never starts (pg 9 drops its queue, and a CancelRequest sent for
 * a statement still in pg's queue would cancel whichever statement the server runs at that moment).
 */
export class PooledConnection implements Connection {
  private readonly turn = Effect.unsafeMakeSemaphore(1)

  constructor(
    readonly pool: ConnectionPool.ConnectionPool<pg.Client>,
    readonly pinned: pg.Client | undefined
  ) {}

  /** One statement: on the pinned client, or on a pooled one through `withConnectionCallback`. */
  private run<A>(query: Query, map: (result: pg.QueryResult) => A): Effect.Effect<A, SqlError> {
    if (this.pinned !== undefined) return Effect.map(this.turn.withPermits(1)(runPinned(this.pinned, query)), map)
    return Effect.mapBoth(this.pool.withConnectionCallback(start(query)), { onFailure: acquireFailed, onSuccess: map })
  }

  /**
   * Ends a transaction (or returns to a savepoint) after a failure, and never fails: on a session known to be gone
   * there is nothing to roll back (the server discarded the transaction with the session), and a ROLLBACK that
   * fails on a live one marks it broken, so it is closed when released, which ends the transaction on the server.
   */
  rollback(text: string): Effect.Effect<void> {
    const client = this.pinned!
    return this.turn.withPermits(1)(Effect.suspend(() =>
      session.lostError(client) !== undefined ? Effect.void : Effect.catchAll(
        runPinned(client, { text }),
        (error) =>
          Effect.zipRight(
            Effect.sync(() => driver.markBroken(client, error.cause)),
            Effect.logDebug("ROLLBACK failed; the connection will be closed", error)
          )
      )
    ))
  }

  execute(sql: string, params: ReadonlyArray<unknown>, transformRows: Transform) {
    return this.run({ text: sql, values: params }, transformRows ? (r) => transformRows(rows(r)) : rows)
  }
  executeRaw(sql: string, params: ReadonlyArray<unknown>) {
    return this.run({ text: sql, values: params }, (r) => r)
  }
  executeValues(sql: string, params: ReadonlyArray<unknown>) {
    return this.run(
      { text: sql, values: params, rowMode: "array" },
      (r) => r.rows as unknown as ReadonlyArray<ReadonlyArray<unknown>>
    )
  }
  executeUnprepared(sql: string, params: ReadonlyArray<unknown>, transformRows: Transform) {
    return this.execute(sql, params, transformRows)
  }
  executeStream(sql: string, params: ReadonlyArray<unknown>, transformRows: Transform) {
    const pool = this.pool
    const pinned = this.pinned
    const turn = this.turn
    return Stream.unwrapScoped(Effect.gen(function*() {
      let client: pg.Client
      if (pinned === undefined) client = yield* Effect.mapError(pool.get, acquireFailed)
      else {
        // the cursor holds the session until it is closed: its turn lasts as long as the stream
        yield* Effect.acquireRelease(turn.take(1), () => turn.release(1))
        const lost = session.lostError(pinned)
        if (lost !== undefined) return yield* lostSession(lost)
        client = pinned
      }
      const cursor = client.query(new Cursor(sql, params as Array<unknown>))
      yield* Effect.addFinalizer(() =>
        Effect.promise(() => cursor.close().catch(() => {})).pipe(Effect.timeoutOption("2 seconds"))
      )
      const pull = Effect.async<Chunk.Chunk<any>, Option.Option<SqlError>>((resume) => {
        cursor.read(128, (error, rows) => {
          if (error) {
            resume(Effect.fail(Option.some(new SqlError({ cause: error, message: "Failed to execute statement" }))))
          }
          else if (Arr.isNonEmptyArray(rows)) {
            resume(Effect.succeed(Chunk.unsafeFromArray(transformRows ? transformRows(rows) as any : rows)))
          } else resume(Effect.fail(Option.none()))
        })
      })
      return Stream.repeatEffectChunkOption(pull)
    }))
  }
}

/**
 * `sql.withTransaction`, with what @effect/sql's own makes a defect made a typed failure: a COMMIT that fails
 * (the session died, a deferred constraint, a serialization failure) fails the transaction with its `SqlError`,
 * and a failed transaction whose session died ends in the statement's `SqlError`, whose cause is the server's
 * error (see `rollback`).
 */
const transactions = (
  reserve: Effect.Effect<Connection, SqlError, Scope.Scope>,
  spanAttributes: ReadonlyArray<readonly [string, unknown]>
) =>
<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
  Effect.suspend(() => {
    let commitFailure: SqlError | undefined
    const transaction = Client.makeWithTransaction({
      transactionTag: Client.TransactionConnection,
      spanAttributes,
      acquireConnection: Effect.flatMap(
        Scope.make(),
        (scope) => Effect.map(Scope.extend(reserve, scope), (conn) => [scope, conn] as const)
      ),
      begin: (conn) => conn.executeUnprepared("BEGIN", [], undefined),
      savepoint: (conn, id) => conn.executeUnprepared(`SAVEPOINT effect_sql_${id}`, [], undefined),
      commit: (conn) =>
        Effect.catchAll(conn.executeUnprepared("COMMIT", [], undefined), (error) =>
          Effect.sync(() => {
            commitFailure = error
          })),
      rollback: (conn) => (conn as PooledConnection).rollback("ROLLBACK"),
      rollbackSavepoint: (conn, id) => (conn as PooledConnection).rollback(`ROLLBACK TO SAVEPOINT effect_sql_${id}`)
    })
    return Effect.flatMap(
      transaction(effect),
      (a) => commitFailure === undefined ? Effect.succeed(a) : Effect.fail(commitFailure)
    )
  })

/**
 * A `PgClient` whose statements run on our pool. Transactions (and `reserve`) hold one connection for their
 * scope; `listen` keeps one dedicated client outside the pool (LISTEN belongs to a session).
 * @internal
 */
export const make = (
  pool: ConnectionPool.ConnectionPool<pg.Client>,
  options: driver.ConnectOptions & ClientOptions,
  config: PgClient.PgClientConfig
): Effect.Effect<PgClient.PgClient, never, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const target = driver.target(options)
    const unpinned = new PooledConnection(pool, undefined)
    const reserve: Effect.Effect<Connection, SqlError, Scope.Scope> = Effect.map(
      Effect.mapError(pool.get, toSqlError("Failed to acquire connection for transaction")),
      (client) => new PooledConnection(pool, client)
    )
    const listener = driver.make(options)
    const listenClient = yield* RcRef.make({
      acquire: Effect.acquireRelease(
        Effect.mapError(listener.connect, failed("Failed to acquire connection for listen")),
        listener.close
      )
    })
    const spanAttributes: ReadonlyArray<readonly [string, unknown]> = [
      ...(options.spanAttributes ? Object.entries(options.spanAttributes) : []),
      ["db.system.name", "postgresql"],
      ["db.namespace", target.database],
      ["server.address", target.host],
      ["server.port", target.port]
    ]
    const sql = yield* Client.make({
      acquirer: Effect.succeed(unpinned),
      transactionAcquirer: reserve,
      compiler: PgClient.makeCompiler(options.transformQueryNames, options.transformJson),
      spanAttributes,
      transformRows: options.transformResultNames
        ? Statement.defaultTransforms(options.transformResultNames, options.transformJson).array
        : undefined
    })
    return Object.assign(sql, {
      [PgClient.TypeId]: PgClient.TypeId,
      config,
      withTransaction: transactions(reserve, spanAttributes),
      json: (_: unknown) => PgJson(_),
      listen: (channel: string) =>
        Stream.asyncPush<string, SqlError>(Effect.fnUntraced(function*(emit) {
          const client = yield* RcRef.get(listenClient)
          const onNotification = (msg: pg.Notification) => {
            if (msg.channel === channel && msg.payload !== undefined) emit.single(msg.payload)
          }
          yield* Effect.addFinalizer(() => {
            client.off("notification", onNotification)
            return Effect.ignore(run(client, { text: `UNLISTEN ${escapeIdentifier(channel)}` }, () => undefined))
          })
          yield* run(client, { text: `LISTEN ${escapeIdentifier(channel)}` }, () => undefined)
          client.on("notification", onNotification)
        })),
      notify: (channel: string, payload: string) =>
        // NOTIFY takes no bind parameters; pg_notify is its documented equivalent
        unpinned.executeRaw("SELECT pg_notify($1, $2)", [channel, payload]).pipe(Effect.asVoid)
    }) as PgClient.PgClient
  })

const escapeIdentifier = (name: string) => `"${name.replace(/"/g, "\"\"")}"`
