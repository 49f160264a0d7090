/**
 * Read/write splitting for PostgreSQL: a primary and any number of streaming replicas, each a `PgPool`, behind
 * one `SqlClient` / `PgClient` (the router from `@connection-pool/sql`). Statements run on the primary unless
 * inside `SqlRouter.withRead`; replica lag is measured from WAL positions (the primary's
 * `pg_current_wal_insert_lsn()` against each replica's `pg_last_wal_replay_lsn()`), read-your-writes compares
 * LSNs, and replica sessions are opened with `default_transaction_read_only=on`, so a write sent to one by
 * mistake fails as `WriteOnReplica` instead of being attempted.
 *
 * @example
 * ```ts
 * import { PgRouter } from "@connection-pool/pg"
 * import { SqlRouter } from "@connection-pool/sql"
 * import { SqlClient } from "@effect/sql"
 * import { Effect, Redacted } from "effect"
 *
 * const DbLive = PgRouter.layer({
 *   primary: { url: Redacted.make("postgres://app@primary:5432/app") },
 *   replicas: [{ url: Redacted.make("postgres://app@replica1:5432/app") }],
 *   maxLag: "1 second"
 * })
 *
 * const program = Effect.gen(function*() {
 *   const sql = yield* SqlClient.SqlClient
 *   yield* sql`INSERT INTO events (kind) VALUES ('signup')`
 *   return yield* SqlRouter.withRead(sql`SELECT count(*) FROM events`) // a replica that has the insert
 * }).pipe(Effect.provide(DbLive))
 * ```
 *
 * @since 0.2.0
 */
import type * as ConnectionPool from "@connection-pool/core/ConnectionPool"
import type { InvalidConfig, PoolError } from "@connection-pool/core/PoolError"
import * as SqlRouter from "@connection-pool/sql/SqlRouter"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type pg from "pg"
import * as replication from "./internal/replication.js"
import * as PgPool from "./PgPool.js"

/**
 * One server: its connection and pool options (over the shared ones), and a name (default `primary`,
 * `replica1`, `replica2`, ...).
 *
 * @since 0.2.0
 * @category models
 */
export interface ServerConfig extends PgPool.PgPoolConfig {
  readonly name?: string | undefined
}

/**
 * @since 0.2.0
 * @category models
 */
export interface PgRouterConfig extends SqlRouter.RouterConfig, Omit<PgPool.PgPoolConfig, "name"> {
  readonly primary: ServerConfig
  readonly replicas: ReadonlyArray<ServerConfig>
  /** Open replica sessions with `default_transaction_read_only=on`. Default true. */
  readonly readOnlyReplicas?: boolean | undefined
}

/**
 * What {@link make} builds: the router, its routing client, and each server's own pool and client.
 *
 * @since 0.2.0
 * @category models
 */
export interface PgRouter {
  readonly router: SqlRouter.SqlRouter
  /** The routing client, also a `PgClient` (`json`, and `listen` / `notify` on the primary). */
  readonly client: PgClient.PgClient
  readonly primary: { readonly pool: ConnectionPool.ConnectionPool<pg.Client>; readonly client: PgClient.PgClient }
  readonly replicas: ReadonlyArray<
    { readonly pool: ConnectionPool.ConnectionPool<pg.Client>; readonly client: PgClient.PgClient }
  >
}

/**
 * PostgreSQL's replication positions and errors, for `SqlRouter.make` over PgClients of your own.
 *
 * @since 0.2.0
 * @category constructors
 */
export const replication_: SqlRouter.Replication = replication.postgres
export { replication_ as replication }

/**
 * Builds every server's pool and the router in the current scope.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (
  options: PgRouterConfig
): Effect.Effect<PgRouter, InvalidConfig | PoolError | SqlError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const { primary: primaryConfig, readOnlyReplicas, replicas: replicaConfigs, ...rest } = options
    const {
      fallback,
      lagInterval,
      lagTimeout,
      maxLag,
      name,
      readYourWrites,
      readYourWritesWindow,
      rejoinLag,
      selection,
      ...shared
    } = rest
    yield* SqlRouter.validate(rest, {
      primary: primaryConfig.name ?? "primary",
      replicas: replicaConfigs.map((r, i) => r.name ?? `replica${i + 1}`)
    })
    const build = (server: ServerConfig, fallbackName: string, readOnly: boolean) =>
      Effect.gen(function*() {
        const serverName = server.name ?? fallbackName
        const config = { ...shared, ...defined(server), name: `${name ?? "router"}/${serverName}` }
        const built = yield* PgPool.make(readOnly ? replication.readOnly(config) : config)
        return { ...built, serverName }
      })
    const primary = yield* build(primaryConfig, "primary", false)
    const replicas = yield* Effect.forEach(
      replicaConfigs,
      (r, i) => build(r, `replica${i + 1}`, readOnlyReplicas !== false),
      { concurrency: "unbounded" }
    )
    const transforms = shared.transformResultNames
      ? Statement.defaultTransforms(shared.transformResultNames, shared.transformJson).array
      : undefined
    const router = yield* SqlRouter.make({
      name,
      selection,
      maxLag,
      rejoinLag,
      lagInterval,
      lagTimeout,
      readYourWrites,
      readYourWritesWindow,
      fallback,
      primary: { name: primary.serverName, client: primary.client, connection: replication.connection(primary.pool) },
      replicas: replicas.map((r) => ({
        name: r.serverName,
        client: r.client,
        connection: replication.connection(r.pool)
      })),
      compiler: PgClient.makeCompiler(shared.transformQueryNames, shared.transformJson),
      replication: replication.postgres,
      spanAttributes: [["db.system.name", "postgresql"]],
      transformRows: transforms
    })
    const client = Object.assign(router.client, {
      [PgClient.TypeId]: PgClient.TypeId,
      config: primary.client.config,
      json: primary.client.json,
      listen: primary.client.listen,
      notify: primary.client.notify
    }) as PgClient.PgClient
    return {
      router,
      client,
      primary: { pool: primary.pool, client: primary.client },
      replicas: replicas.map((r) => ({ pool: r.pool, client: r.client }))
    }
  })

const defined = <O extends object>(o: O): Partial<O> =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<O>

/**
 * `SqlClient` and `PgClient` (the routing client), `SqlRouter`, and `PgPool` (the primary's pool).
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (
  options: PgRouterConfig
): Layer.Layer<
  SqlClient.SqlClient | PgClient.PgClient | SqlRouter.SqlRouter | PgPool.PgPool,
  InvalidConfig | PoolError | SqlError
> =>
  Layer.scopedContext(
    Effect.map(make(options), (built) =>
      Context.make(SqlRouter.SqlRouter, built.router).pipe(
        Context.add(SqlClient.SqlClient, built.client),
        Context.add(PgClient.PgClient, built.client),
        Context.add(PgPool.PgPool, built.primary.pool)
      ))
  ).pipe(Layer.provide(Reactivity.layer))

/**
 * `layer` with its options read from `Config`: a Redacted URL per server, for example
 * `{ primary: { url: Config.redacted("PRIMARY_URL") }, replicas: Config.all([...]) }`.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<PgRouterConfig>
): Layer.Layer<
  SqlClient.SqlClient | PgClient.PgClient | SqlRouter.SqlRouter | PgPool.PgPool,
  ConfigError.ConfigError | InvalidConfig | PoolError | SqlError
> => Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))
