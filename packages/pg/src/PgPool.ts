/**
 * PostgreSQL on `@connection-pool/core`: a driver for `pg.Client`, and the layer that gives an Effect program a
 * `PgClient` / `SqlClient` (from @effect/sql-pg) whose connections come from our `ConnectionPool` instead of
 * pg-pool. Existing `sql\`...\`` code runs unchanged: queries, `sql.withTransaction`, streams (cursors),
 * `listen` / `notify`, and cancellation of a running query when its fiber is interrupted. The client is built
 * with @effect/sql's `SqlClient.make` (sql-pg's compiler and semantics): each statement borrows a connection in
 * its caller's own fiber, a transaction holds one for its whole scope.
 *
 * @example
 * ```ts
 * import { PgPool } from "@connection-pool/pg"
 * import { SqlClient } from "@effect/sql"
 * import { Effect, Redacted } from "effect"
 *
 * const DbLive = PgPool.layer({ url: Redacted.make("postgres://app@db:5432/app"), maxSize: 20 })
 *
 * const program = Effect.gen(function*() {
 *   const sql = yield* SqlClient.SqlClient
 *   return yield* sql`SELECT now()`
 * }).pipe(Effect.provide(DbLive))
 * ```
 *
 * @since 0.1.0
 */
import * as ConnectionPool from "@connection-pool/core/ConnectionPool"
import { type ConnectionError, InvalidConfig, type PoolError } from "@connection-pool/core/PoolError"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type pg from "pg"
import * as driver from "./internal/driver.js"
import * as pgClient from "./internal/client.js"

/**
 * Connection options (`url` or its parts; secrets as `Redacted`), the pool's options from
 * `@connection-pool/core`, and @effect/sql-pg's client options.
 *
 * @since 0.1.0
 * @category models
 */
export interface PgPoolConfig extends ConnectionPool.PoolConfig, driver.ConnectOptions, pgClient.ClientOptions {
  /** Open one connection while the layer is built, so a wrong URL or password fails the layer. Default true. */
  readonly connectOnStart?: boolean | undefined
}

/**
 * The pool of raw `pg.Client`s behind the layer's `PgClient`.
 *
 * @since 0.1.0
 * @category tags
 */
export class PgPool extends ConnectionPool.Tag("@connection-pool/pg/PgPool")<PgPool, pg.Client>() {}

/**
 * The driver alone, for a `ConnectionPool` of your own: connects with readable errors that name host, port,
 * database and user and never a password (`atCapacity` when the server is full); validates with `SELECT 1`; never
 * reuses a client whose session is lost (it emitted `error` or `end`, or a query on it failed with a
 * connection-class error) or that still has a query in flight (it is cancelled on the server, then closed). A
 * malformed `url` fails every connect with a `ConnectionError` that quotes none of it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const driver_: (options: driver.ConnectOptions) => ConnectionPool.Driver<pg.Client> = driver.make
export { driver_ as driver }

/**
 * Builds the pool and a `PgClient` served by it, in the current scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: PgPoolConfig
): Effect.Effect<
  { readonly pool: ConnectionPool.ConnectionPool<pg.Client>; readonly client: PgClient.PgClient },
  InvalidConfig | ConnectionError | PoolError | SqlError,
  Scope.Scope | Reactivity.Reactivity
> =>
  Effect.gen(function*() {
    const badUrl = driver.urlProblem(options)
    if (badUrl !== undefined) {
      return yield* new InvalidConfig({ option: "url", value: "<redacted>", reason: badUrl })
    }
    // pg times the connect out itself, so the failure is a ConnectionError that names the server; the pool's own
    // connect timeout, a second later, only catches a driver that hangs regardless
    // (an invalid value goes to the pool untouched, which rejects it with InvalidConfig)
    const decoded = Duration.decodeUnknown(options.connectTimeout ?? options.acquireTimeout ?? "30 seconds")
    const valid = Option.filter(decoded, (d) => Duration.isFinite(d) && Duration.toMillis(d) > 0)
    const pool = yield* ConnectionPool.make({
      name: "postgres",
      ...options,
      connectTimeout: Option.isSome(valid) ? Duration.sum(valid.value, Duration.seconds(1)) : options.connectTimeout,
      driver: driver.make({ ...options, connectTimeout: Option.getOrUndefined(valid) })
    })
    if (options.connectOnStart !== false) yield* pool.withConnection(() => Effect.void)
    const client = yield* pgClient.make(pool, options, {
      url: options.url,
      host: options.host,
      port: options.port,
      database: options.database,
      username: options.username,
      password: options.password,
      ssl: options.ssl,
      applicationName: options.applicationName,
      spanAttributes: options.spanAttributes,
      transformResultNames: options.transformResultNames,
      transformQueryNames: options.transformQueryNames,
      transformJson: options.transformJson,
      types: options.types,
      maxConnections: options.maxSize,
      minConnections: options.minSize
    })
    return { pool, client }
  })

/**
 * `PgPool`, `PgClient` and `SqlClient`, from one pool.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: PgPoolConfig
): Layer.Layer<PgPool | PgClient.PgClient | SqlClient.SqlClient, InvalidConfig | PoolError | SqlError> =>
  Layer.scopedContext(
    Effect.map(make(options), ({ client, pool }) =>
      Context.make(PgPool, pool).pipe(
        Context.add(PgClient.PgClient, client),
        Context.add(SqlClient.SqlClient, client)
      ))
  ).pipe(Layer.provide(Reactivity.layer))

/**
 * `layer` with its options read from `Config`, for example environment variables.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<PgPoolConfig>
): Layer.Layer<
  PgPool | PgClient.PgClient | SqlClient.SqlClient,
  ConfigError.ConfigError | InvalidConfig | PoolError | SqlError
> => Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))

/**
 * Runs `f` with a raw `pg.Client` from the layer's pool. A connection-class failure (SQLSTATE 08xxx, 57P01..03)
 * evicts the connection.
 *
 * @since 0.1.0
 * @category accessors
 */
export const withConnection = <X, E, R>(
  f: (client: pg.Client) => Effect.Effect<X, E, R>
): Effect.Effect<X, E | PoolError, R | PgPool> =>
  PgPool.withConnection((client) =>
    Effect.tapErrorCause(f(client), (cause) =>
      Effect.sync(() => {
        for (const error of [...causeErrors(cause)]) if (driver.isConnectionFailure(error)) driver.markBroken(client, error)
      }))
  )

function* causeErrors(cause: import("effect/Cause").Cause<unknown>): Generator<unknown> {
  switch (cause._tag) {
    case "Fail":
      yield cause.error
      yield (cause.error as { cause?: unknown } | undefined)?.cause
      break
    case "Die":
      yield cause.defect
      break
    case "Sequential":
    case "Parallel":
      yield* causeErrors(cause.left)
      yield* causeErrors(cause.right)
      break
  }
}

/**
 * Runs `query` on a raw client, as an Effect that fails with the `pg` error (SQLSTATE in `code`). Interrupting it
 * cancels the statement on the server.
 *
 * @since 0.1.0
 * @category utils
 */
export const query = <R extends pg.QueryResultRow = pg.QueryResultRow>(
  client: pg.Client,
  text: string,
  values?: ReadonlyArray<unknown>
): Effect.Effect<pg.QueryResult<R>, pg.DatabaseError | Error> =>
  Effect.async((resume) => {
    client.query<R>(text, values as Array<unknown>, (error, result) =>
      resume(error ? Effect.fail(error as pg.DatabaseError) : Effect.succeed(result)))
    return Effect.suspend(() => driver.cancel(client)) // built only when interrupted
  })

/**
 * Why a query's failure is a lost session rather than a bad statement.
 *
 * @since 0.1.0
 * @category utils
 */
export const isConnectionFailure: (error: unknown) => boolean = driver.isConnectionFailure
