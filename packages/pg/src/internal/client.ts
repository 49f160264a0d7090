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
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type pg from "pg"
import Cursor from "pg-cursor"
import * as driver from "./driver.js"

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

/** The pool's own failures (no connection) become SqlErrors that keep them as `cause`. */
const toSqlError = (e: SqlError | PoolError): SqlError =>
  e._tag === "SqlError" ? e : new SqlError({ cause: e, message: "Failed to acquire connection" })

interface Query {
  readonly text: string
  readonly values?: ReadonlyArray<unknown> | undefined
  readonly rowMode?: "array" | undefined
}

/**
 * Starts one statement on `client` and calls `done` with pg's result; returns what cancels it on the server. In
 * the callback form that `ConnectionPool.withConnectionCallback` takes. Rows are transformed afterwards, by the
 * caller: a transform that throws is the caller's defect, and the connection, which did nothing wrong, goes back.
 */
const start = (query: Query) =>
(client: pg.Client, done: (exit: Exit.Exit<pg.QueryResult, SqlError>) => void): Effect.Effect<void> => {
  const callback = (error: Error | null, result: pg.QueryResult) =>
    done(
      error ? Exit.fail(new SqlError({ cause: error, message: "Failed to execute statement" })) : Exit.succeed(result)
    )
  // text and values as arguments where possible: pg copies a config object, property by property, on every query
  if (query.rowMode === undefined) client.query(query.text, query.values as Array<unknown>, callback)
  else client.query({ text: query.text, values: query.values as Array<unknown>, rowMode: query.rowMode }, callback)
  return Effect.suspend(() => driver.cancel(client)) // built only when interrupted
}

/** Runs one statement on `client`. Interrupting it cancels it on the server. */
const run = <A>(
  client: pg.Client,
  query: Query,
  map: (result: pg.QueryResult) => A
) => {
  const begin = start(query)
  return Effect.map(Effect.async<pg.QueryResult, SqlError>((resume) => begin(client, resume)), map)
}

const rows = (result: pg.QueryResult | Array<pg.QueryResult>) =>
  Array.isArray(result) ? result.map((r) => r.rows ?? []) : result.rows ?? []

/**
 * @effect/sql's `Connection` on our pool: each statement borrows a connection for itself, unless `pinned` (a
 * transaction, or `sql.reserve`) holds one for a whole scope. A statement that waits for a connection is started
 * by the release that frees one (`withConnectionCallback`), in the releasing fiber; its caller wakes once.
 */
export class PooledConnection implements Connection {
  constructor(
    readonly pool: ConnectionPool.ConnectionPool<pg.Client>,
    readonly pinned: pg.Client | undefined
  ) {}

  /**
   * One statement: on the pinned client, or on a pooled one through `withConnectionCallback`, so that a caller
   * who waits for a connection is woken once, with the statement's result (the releaser starts the statement).
   */
  private run<A>(
    query: Query,
    map: (result: pg.QueryResult) => A
  ): Effect.Effect<A, SqlError> {
    if (this.pinned !== undefined) return run(this.pinned, query, map)
    return Effect.mapBoth(this.pool.withConnectionCallback(start(query)), { onFailure: toSqlError, onSuccess: map })
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
    return Stream.unwrapScoped(Effect.gen(function*() {
      const client = pinned ?? (yield* Effect.mapError(pool.get, failed("Failed to acquire connection")))
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
      Effect.mapError(pool.get, failed("Failed to acquire connection for transaction")),
      (client) => new PooledConnection(pool, client)
    )
    const listener = driver.make(options)
    const listenClient = yield* RcRef.make({
      acquire: Effect.acquireRelease(
        Effect.mapError(listener.connect, failed("Failed to acquire connection for listen")),
        listener.close
      )
    })
    const sql = yield* Client.make({
      acquirer: Effect.succeed(unpinned),
      transactionAcquirer: reserve,
      compiler: PgClient.makeCompiler(options.transformQueryNames, options.transformJson),
      spanAttributes: [
        ...(options.spanAttributes ? Object.entries(options.spanAttributes) : []),
        ["db.system.name", "postgresql"],
        ["db.namespace", target.database],
        ["server.address", target.host],
        ["server.port", target.port]
      ],
      transformRows: options.transformResultNames
        ? Statement.defaultTransforms(options.transformResultNames, options.transformJson).array
        : undefined
    })
    return Object.assign(sql, {
      [PgClient.TypeId]: PgClient.TypeId,
      config,
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
