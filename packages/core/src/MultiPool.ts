/**
 * One pool over many servers: a `ConnectionPool` per server behind the borrowing API of a single pool.
 *
 * Each borrow picks a usable server (round-robin, random, least-in-use, or a function of yours) and borrows from
 * that server's pool. A server whose connects fail `banAfter` times in a row is banned for `banTime` (jittered);
 * when the ban is due, one probe, run by a background fiber rather than by a caller, lifts it. When every server
 * is banned the bans are lifted together rather than failing every caller (`whenAllBanned: "unban"`, pgcat's
 * safety), or callers get a {@link NoHealthyServer} naming each server and its last error (`"fail"`). A borrower
 * whose server fails to connect, or sheds it (`maxWaiting`: `PoolOverloaded`), tries the next usable server within
 * the same `acquireTimeout`; the `ConnectionError` it gets when all fail names every server tried (a
 * `PoolOverloaded` when every one shed it or was full).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MultiPool } from "@connection-pool/core"
 *
 * const program = Effect.gen(function*() {
 *   const pool = yield* MultiPool.make({
 *     servers: [{ name: "a", driver: driverA }, { name: "b", driver: driverB }],
 *     maxSizePerServer: 5,
 *     selection: "least-in-use"
 *   })
 *   return yield* pool.withConnection((conn) => conn.query("SELECT 1"))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.2.0
 */
import type * as Context from "effect/Context"
import * as Data from "effect/Data"
import { dual } from "effect/Function"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Layer from "effect/Layer"
import type { Pipeable } from "effect/Pipeable"
import type * as Scope from "effect/Scope"
import type * as ConnectionPool from "./ConnectionPool.js"
import * as internal from "./internal/multipool/multiPool.js"
import type { InvalidConfig, PoolError } from "./PoolError.js"
import type { PoolStats } from "./PoolStats.js"

/**
 * @since 0.2.0
 * @category type ids
 */
export const TypeId: unique symbol = internal.TypeId as TypeId

/**
 * @since 0.2.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * What selection sees of a usable server: its position in `servers`, its name, and how many borrows through
 * this multi-pool it has right now (waiting or holding).
 *
 * @since 0.2.0
 * @category models
 */
export interface ServerView {
  readonly index: number
  readonly name: string
  readonly inUse: number
}

/**
 * How a borrow picks among the usable servers. A function receives them (never empty, in server order) and
 * returns the `index` of one of them.
 *
 * @since 0.2.0
 * @category models
 */
export type Selection =
  | "round-robin"
  | "random"
  | "least-in-use"
  | ((servers: ReadonlyArray<ServerView>) => number)

/**
 * One server: a unique name (it names the server in errors, logs and stats, and its pool is called
 * `"<multi-pool name>/<server name>"`), its driver, and any pool option that differs from the shared ones.
 *
 * @since 0.2.0
 * @category models
 */
export interface ServerOptions<A, R = never> extends Omit<ConnectionPool.PoolConfig, "name"> {
  readonly name: string
  readonly driver: ConnectionPool.Driver<A, R>
}

/**
 * @since 0.2.0
 * @category models
 */
export interface Options<A, R = never> extends Omit<ConnectionPool.PoolConfig, "name" | "minSize" | "maxSize"> {
  /** Names the multi-pool in errors and logs. Default `"multi"`. */
  readonly name?: string | undefined
  readonly servers: ReadonlyArray<ServerOptions<A, R>>
  /** Each server's `minSize`, unless the server says otherwise. Default 0. */
  readonly minSizePerServer?: number | undefined
  /** Each server's `maxSize`, unless the server says otherwise. Default 10. */
  readonly maxSizePerServer?: number | undefined
  /** Default `"round-robin"`. */
  readonly selection?: Selection | undefined
  /** Consecutive failed connects that ban a server. 0 turns automatic bans off. Default 3. */
  readonly banAfter?: number | undefined
  /** How long a ban lasts before its probe. Default 10 seconds. */
  readonly banTime?: Duration.DurationInput | undefined
  /** Shortens each ban by a random fraction up to this, so bans do not end together. Default 0.2. */
  readonly banJitter?: number | undefined
  /** When every server is banned: lift all bans (default, `"unban"`) or fail with `NoHealthyServer`. */
  readonly whenAllBanned?: "unban" | "fail" | undefined
}

/**
 * One server in {@link MultiStats}.
 *
 * @since 0.2.0
 * @category models
 */
export interface ServerStats {
  readonly index: number
  readonly name: string
  /** Not banned and not marked unhealthy. */
  readonly healthy: boolean
  readonly banned: boolean
  /** Marked unhealthy with `markUnhealthy`. */
  readonly marked: boolean
  readonly consecutiveFailures: number
  /** The last connect failure's message (never a secret: drivers keep them out). */
  readonly lastError: string | undefined
  readonly stats: PoolStats
}

/**
 * @since 0.2.0
 * @category models
 */
export interface MultiStats {
  readonly name: string
  readonly servers: number
  readonly healthyServers: number
  /** Every server's pool added up (gauges and counters summed, wait time weighted by acquisitions). */
  readonly aggregate: PoolStats
  readonly perServer: ReadonlyArray<ServerStats>
}

/**
 * @since 0.2.0
 * @category models
 */
export interface MultiPool<A> extends Pipeable {
  readonly [TypeId]: TypeId
  readonly name: string
  /** Server names, in order. */
  readonly servers: ReadonlyArray<string>
  /** A connection from a usable server, released when the caller's scope closes (see `ConnectionPool.get`). */
  readonly get: Effect.Effect<A, PoolError | NoHealthyServer, Scope.Scope>
  /** Never waits: tries each usable server's `tryGet`; `PoolEmpty` only when every one is full. */
  readonly tryGet: Effect.Effect<A, PoolError | NoHealthyServer, Scope.Scope>
  withConnection<X, E, R>(f: (conn: A) => Effect.Effect<X, E, R>): Effect.Effect<X, E | PoolError | NoHealthyServer, R>
  withConnectionTry<X, E, R>(
    f: (conn: A) => Effect.Effect<X, E, R>
  ): Effect.Effect<X, E | PoolError | NoHealthyServer, R>
  /** See `ConnectionPool.withConnectionCallback`. */
  withConnectionCallback<X, E>(
    start: (conn: A, done: (exit: Exit.Exit<X, E>) => void) => Effect.Effect<void> | void
  ): Effect.Effect<X, E | PoolError | NoHealthyServer>
  /** This connection (borrowed from this multi-pool) is closed instead of reused. */
  invalidate(conn: A): Effect.Effect<void>
  /** Skips server `index` (a position in `servers`) until `markHealthy`: no probe, no automatic unban. */
  markUnhealthy(index: number): Effect.Effect<void, InvalidConfig>
  /** Clears a mark and any ban of server `index`. */
  markHealthy(index: number): Effect.Effect<void, InvalidConfig>
  readonly stats: Effect.Effect<MultiStats>
  /** Shuts every server's pool down (see `ConnectionPool.shutdown`); idempotent. */
  shutdown(timeout?: Duration.DurationInput): Effect.Effect<void>
}

/**
 * No server can be used: each is banned or marked unhealthy (and `whenAllBanned` is `"fail"`, or every server is
 * marked by hand). Names each server and why.
 *
 * @since 0.2.0
 * @category errors
 */
export class NoHealthyServer extends Data.TaggedError("NoHealthyServer")<{
  readonly pool: string
  readonly servers: ReadonlyArray<{
    readonly name: string
    readonly reason: "banned" | "marked unhealthy"
    readonly lastError: string | undefined
  }>
}> {
  override get message(): string {
    const each = this.servers.map((s) =>
      `${s.name}: ${s.reason}${s.lastError === undefined ? "" : ` (last error: ${s.lastError})`}`
    )
    return `multi-pool "${this.pool}" has no healthy server: ${each.join("; ")}`
  }
}

/**
 * @since 0.2.0
 * @category refinements
 */
export const isMultiPool: (u: unknown) => u is MultiPool<unknown> = internal.isMultiPool

/**
 * Builds one pool per server in the current scope, plus a prober fiber per server. Fails with `InvalidConfig`
 * for an empty or duplicated server list, or any bad option (a server's own is named `servers[i].option`).
 *
 * @since 0.2.0
 * @category constructors
 */
export const make: <A, R = never>(
  options: Options<A, R>
) => Effect.Effect<MultiPool<A>, InvalidConfig, Scope.Scope | R> = internal.make

/**
 * Builds a multi-pool as a layer for `tag`.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer: <I, A, R = never>(
  tag: Context.Tag<I, MultiPool<A>>,
  options: Options<A, R>
) => Layer.Layer<I, InvalidConfig, R> = internal.layer

/**
 * @since 0.2.0
 * @category combinators
 */
export const withConnection: {
  <A, X, E, R>(
    f: (conn: A) => Effect.Effect<X, E, R>
  ): (self: MultiPool<A>) => Effect.Effect<X, E | PoolError | NoHealthyServer, R>
  <A, X, E, R>(
    self: MultiPool<A>,
    f: (conn: A) => Effect.Effect<X, E, R>
  ): Effect.Effect<X, E | PoolError | NoHealthyServer, R>
} = dual(2, <A, X, E, R>(self: MultiPool<A>, f: (conn: A) => Effect.Effect<X, E, R>) => self.withConnection(f))

/**
 * @since 0.2.0
 * @category combinators
 */
export const withConnectionTry: {
  <A, X, E, R>(
    f: (conn: A) => Effect.Effect<X, E, R>
  ): (self: MultiPool<A>) => Effect.Effect<X, E | PoolError | NoHealthyServer, R>
  <A, X, E, R>(
    self: MultiPool<A>,
    f: (conn: A) => Effect.Effect<X, E, R>
  ): Effect.Effect<X, E | PoolError | NoHealthyServer, R>
} = dual(2, <A, X, E, R>(self: MultiPool<A>, f: (conn: A) => Effect.Effect<X, E, R>) => self.withConnectionTry(f))

/**
 * @since 0.2.0
 * @category combinators
 */
export const markUnhealthy: {
  (index: number): <A>(self: MultiPool<A>) => Effect.Effect<void, InvalidConfig>
  <A>(self: MultiPool<A>, index: number): Effect.Effect<void, InvalidConfig>
} = dual(2, <A>(self: MultiPool<A>, index: number) => self.markUnhealthy(index))

/**
 * @since 0.2.0
 * @category combinators
 */
export const markHealthy: {
  (index: number): <A>(self: MultiPool<A>) => Effect.Effect<void, InvalidConfig>
  <A>(self: MultiPool<A>, index: number): Effect.Effect<void, InvalidConfig>
} = dual(2, <A>(self: MultiPool<A>, index: number) => self.markHealthy(index))

/**
 * @since 0.2.0
 * @category accessors
 */
export const stats = <A>(self: MultiPool<A>): Effect.Effect<MultiStats> => self.stats
