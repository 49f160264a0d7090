/**
 * Read/write splitting over `@effect/sql`: one `SqlClient` whose statements run on the primary, except inside
 * {@link withRead}, where they run on a replica that is up, not lagging past `maxLag`, and has replayed the
 * fiber's own writes (read-your-writes). Transactions always run on the primary, reads included, wherever they
 * are opened: @effect/sql keeps a transaction's connection in the fiber's context, and the router never sees
 * those statements.
 *
 * Lag is measured off the request path by a background fiber per replica (the replica's replay position against
 * the primary's write position, sampled by one more fiber), turned into a time: how long the replica has been
 * behind a position the primary had. A replica past `maxLag` is skipped until it is back under `rejoinLag`, so it
 * does not flap. With no usable replica, reads go to the primary (`fallback: "primary"`) or fail with
 * {@link ReplicasUnavailable}, naming each replica and why.
 *
 * The PostgreSQL layer is `PgRouter` in `@connection-pool/pg`; this module is driver-neutral.
 *
 * @since 0.1.0
 */
import type { InvalidConfig } from "@connection-pool/core/PoolError"
import type * as Reactivity from "@effect/experimental/Reactivity"
import type * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Statement from "@effect/sql/Statement"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as options from "./internal/options.js"
import * as internal from "./internal/router.js"
import * as sessions from "./internal/session.js"

/**
 * One server: a name (for stats, metrics and errors), its own `SqlClient`, and optionally a `Connection` that
 * borrows per statement (faster than the default, `client.reserve` per statement).
 *
 * @since 0.1.0
 * @category models
 */
export interface Server {
  readonly name: string
  readonly client: SqlClient.SqlClient
  readonly connection?: Connection | undefined
}

/**
 * What replica selection sees of a usable replica.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReplicaView {
  readonly index: number
  readonly name: string
  /** Statements running on it through this router. */
  readonly inFlight: number
  readonly lagMillis: number
}

/**
 * How a read picks among the usable replicas; a function gets them (never empty) and returns an `index`.
 *
 * @since 0.1.0
 * @category models
 */
export type Selection =
  | "round-robin"
  | "random"
  | "least-connections"
  | ((replicas: ReadonlyArray<ReplicaView>) => number)

/**
 * Replication positions, for lag and read-your-writes (PostgreSQL: WAL LSNs). Without it the router cannot
 * measure lag, and read-your-writes falls back to a time window.
 *
 * @since 0.1.0
 * @category models
 */
export interface Replication {
  /** Where the primary's WAL ends now (every committed write is at or before it). */
  readonly primaryPosition: (primary: SqlClient.SqlClient) => Effect.Effect<bigint, SqlError>
  /** How far the replica has replayed; `inRecovery: false` means it is no longer a replica (promoted). */
  readonly replicaPosition: (
    replica: SqlClient.SqlClient
  ) => Effect.Effect<{ readonly inRecovery: boolean; readonly position: bigint | undefined }, SqlError>
  /** Whether a failed statement is a write refused by a read-only session (PostgreSQL: SQLSTATE 25006). */
  readonly isReadOnlyViolation?: ((error: SqlError) => boolean) | undefined
  /** Whether a failed statement never reached the server, so another server may run it. */
  readonly isRetryable?: ((error: SqlError) => boolean) | undefined
}

/**
 * Routing options. Times take any `Duration.DurationInput`.
 *
 * @since 0.1.0
 * @category models
 */
export interface RouterConfig {
  /** Names the router in metrics and errors. Default `"router"`. */
  readonly name?: string | undefined
  /** Default `"round-robin"`. */
  readonly selection?: Selection | undefined
  /** A replica behind the primary for longer than this is skipped. Default 1 second. */
  readonly maxLag?: Duration.DurationInput | undefined
  /** A skipped replica rejoins once its lag is back under this. Default half of `maxLag`. */
  readonly rejoinLag?: Duration.DurationInput | undefined
  /** How often each replica's lag is measured. Default 250 millis. */
  readonly lagInterval?: Duration.DurationInput | undefined
  /** A lag probe that takes longer than this marks the replica down. Default 2 seconds. */
  readonly lagTimeout?: Duration.DurationInput | undefined
  /**
   * After a fiber (or a {@link session}) writes, its reads go only to a replica that has replayed the write, else
   * to the primary. `true` (default): by replication position, or by `readYourWritesWindow` where no position is
   * known; `"window"`: by time only; `false`: off.
   */
  readonly readYourWrites?: boolean | "window" | undefined
  /** How long after a write reads stay on the primary when no replication position is known. Default 2 seconds. */
  readonly readYourWritesWindow?: Duration.DurationInput | undefined
  /** No usable replica: read from the primary (default) or fail with `ReplicasUnavailable`. */
  readonly fallback?: "primary" | "fail" | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options extends RouterConfig {
  readonly primary: Server
  readonly replicas: ReadonlyArray<Server>
  /** The dialect's compiler (for PostgreSQL, `PgClient.makeCompiler()`). */
  readonly compiler: Statement.Compiler
  readonly replication?: Replication | undefined
  readonly spanAttributes?: ReadonlyArray<readonly [string, unknown]> | undefined
  readonly transformRows?: (<A extends object>(row: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
}

/**
 * Why a replica is not used: `down` (a statement or lag probe could not reach it), `lagging` (past `maxLag`),
 * `promoted` (no longer in recovery), `behind` (has not replayed the reader's own writes yet).
 *
 * @since 0.1.0
 * @category models
 */
export type ReplicaStatus = "up" | "down" | "lagging" | "promoted"

/**
 * @since 0.1.0
 * @category models
 */
export interface ServerStats {
  readonly name: string
  readonly role: "primary" | "replica"
  readonly status: ReplicaStatus
  /** Why it is not `up`, in words. */
  readonly reason: string | undefined
  readonly lagMillis: number
  readonly lagBytes: number
  readonly reads: number
  readonly writes: number
  readonly inFlight: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RouterStats {
  readonly name: string
  readonly servers: ReadonlyArray<ServerStats>
  /** Reads that went to the primary because no replica would do. */
  readonly fallbacks: number
  /** Reads sent to the primary for read-your-writes. */
  readonly pinnedReads: number
  /**
   * Round trips to the primary to learn a write's position for read-your-writes (only when no position sample
   * has been taken since the write).
   */
  readonly positionLookups: number
  /**
   * Round trips to a replica to learn whether it has replayed a reader's writes (only when its last lag sample
   * does not show it).
   */
  readonly replicaChecks: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface SqlRouter {
  readonly name: string
  /** The routing client: the primary, except inside `withRead`. */
  readonly client: SqlClient.SqlClient
  readonly stats: Effect.Effect<RouterStats>
}

/**
 * @since 0.1.0
 * @category tags
 */
export const SqlRouter: Context.Tag<SqlRouter, SqlRouter> = Context.GenericTag<SqlRouter>(
  "@connection-pool/sql/SqlRouter"
)

/**
 * A read found no replica to use (and `fallback` is `"fail"`). Names each replica and why.
 *
 * @since 0.1.0
 * @category errors
 */
export class ReplicasUnavailable extends Data.TaggedError("ReplicasUnavailable")<{
  readonly router: string
  readonly replicas: ReadonlyArray<{ readonly name: string; readonly reason: string }>
}> {
  override get message(): string {
    const each = this.replicas.map((r) => `${r.name}: ${r.reason}`)
    return `router "${this.router}": no replica can serve the read (${each.join("; ") || "no replicas"})`
  }
}

/**
 * A statement in a read region tried to write, and the replica's read-only session refused it.
 *
 * @since 0.1.0
 * @category errors
 */
export class WriteOnReplica extends Data.TaggedError("WriteOnReplica")<{
  readonly replica: string
  readonly cause: SqlError
}> {
  override get message(): string {
    return `a write was sent to replica "${this.replica}" inside withRead; replicas are read-only: run it in ` +
      `withWrite (or outside withRead)`
  }
}

/**
 * Runs `effect`'s statements on replicas. Statements inside a transaction still run on the primary. A read the
 * replicas cannot serve fails with `ReplicasUnavailable` (when `fallback` is `"fail"`); a write refused by a
 * replica fails with `WriteOnReplica`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withRead: <A, E, R>(
  effect: Effect.Effect<A, E, R>
) => Effect.Effect<A, E | ReplicasUnavailable | WriteOnReplica, R> = sessions.withRead

/**
 * Runs `effect`'s statements on the primary, also inside a `withRead`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withWrite: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R> = sessions.withWrite

/**
 * One read-your-writes scope for every fiber of `effect` (a request): a write by any of them sends the reads of
 * all of them to replicas that have replayed it. Outside a session, each fiber has its own (forked fibers start
 * from their parent's).
 *
 * @since 0.1.0
 * @category combinators
 */
export const session: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R> = sessions.session

/**
 * Builds the router and its background fibers in the current scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (
  options: Options
) => Effect.Effect<SqlRouter, InvalidConfig, Scope.Scope | Reactivity.Reactivity> = internal.make

/**
 * Checks routing options and server names as `make` does, before any server is connected to (a layer that opens
 * pools first can fail fast on a bad option).
 *
 * @since 0.1.0
 * @category constructors
 */
export const validate: (
  config: RouterConfig,
  servers: { readonly primary: string; readonly replicas: ReadonlyArray<string> }
) => Effect.Effect<void, InvalidConfig> = options.validate
