/**
 * A driver-generic connection pool for Effect.
 *
 * A pool is built from a {@link Driver} (how to open, close and check one connection) inside a `Scope`: closing
 * the scope shuts it down. Callers borrow with {@link withConnection} or the scoped {@link get}; a caller that
 * must wait queues in strict FIFO order for up to `acquireTimeout`. State lives in one `TRef` (the waiters a FIFO
 * inside it), so an acquire and a release are one transaction each, committed on the hot path without the STM
 * journal (every other transaction reads and writes the same `TRef` through STM), and a released connection goes
 * straight to the oldest waiter. Background fibers in the pool's scope, driven by `Clock`, reap idle and expired connections,
 * keep `minSize` open with jittered backoff, and time out waiters.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ConnectionPool } from "@connection-pool/core"
 *
 * class Db extends ConnectionPool.Tag("app/Db")<Db, Client>() {}
 *
 * const DbLive = Db.layer({ driver: clientDriver, maxSize: 10 })
 *
 * const program = Effect.gen(function*() {
 *   return yield* Db.withConnection((conn) => conn.query("SELECT 1"))
 * }).pipe(Effect.provide(DbLive))
 * ```
 *
 * @since 0.1.0
 */
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Layer from "effect/Layer"
import type { Pipeable } from "effect/Pipeable"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as internal from "./internal/pool.js"
import type { ConnectionError, InvalidConfig, PoolError } from "./PoolError.js"
import type { PoolStats } from "./PoolStats.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = internal.TypeId as TypeId

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * How to open, close and check one connection of type `A`.
 *
 * `connect` should fail with a `ConnectionError` whose `reason` names the server and never a secret, and should
 * release anything half-opened when interrupted. `close` should not fail; it is called exactly once per
 * connection. `validate` answers whether an idle connection still works (for a database: a trivial query); the
 * pool bounds it with `validationTimeout`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Driver<A, R = never> {
  readonly connect: Effect.Effect<A, ConnectionError, R>
  readonly close: (conn: A) => Effect.Effect<void>
  readonly validate?: ((conn: A) => Effect.Effect<boolean>) | undefined
  /**
   * Asked, synchronously, when a connection comes back: `false` closes it instead of reusing it (for example a
   * client that saw its socket die, or still has a query in flight).
   */
  readonly reusable?: ((conn: A) => boolean) | undefined
}

/**
 * Pool options. Times take any `Duration.DurationInput`; `Duration.infinity` turns off
 * `idleTimeout`, `maxLifetime` and `keepaliveInterval`. Every option is checked once, in `make`: a value out of
 * range fails with `InvalidConfig`, never silently clamped.
 *
 * @since 0.1.0
 * @category models
 */
export interface PoolConfig {
  /** Names the pool in errors, logs, spans and metrics (`db.client.connection.pool.name`). Default `"default"`. */
  readonly name?: string | undefined
  /** Connections kept open even when idle, opened in the background. Default 0. */
  readonly minSize?: number | undefined
  /** Most connections open at once, in use or idle. Default 10. */
  readonly maxSize?: number | undefined
  /**
   * Longest an acquire may take, waiting in the queue, a connect opened for it and validating the connection it
   * gets together, before `PoolTimeout` (which says which phase ran out). Default 30 seconds.
   */
  readonly acquireTimeout?: Duration.DurationInput | undefined
  /** Longest one connect may take. Default: `acquireTimeout`. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** An idle connection is closed after this long, down to `minSize`. Default 10 minutes. */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /** A connection is closed once this old, never while in use. Default 30 minutes. */
  readonly maxLifetime?: Duration.DurationInput | undefined
  /** Shortens each lifetime by a random fraction up to this, so connections do not expire together. Default 0.025. */
  readonly maxLifetimeJitter?: number | undefined
  /** A connection idle for less than this is lent without validation. Default 500 millis. */
  readonly validationBypass?: Duration.DurationInput | undefined
  /** Longest a validation may take; past it the connection counts as broken. Default 5 seconds. */
  readonly validationTimeout?: Duration.DurationInput | undefined
  /** Idle connections are validated this often, to keep them (and firewalls) alive. Default off. */
  readonly keepaliveInterval?: Duration.DurationInput | undefined
  /** Extra connects tried on behalf of a caller before its `ConnectionError`. Default 0: fail at once. */
  readonly connectRetries?: number | undefined
  /** First backoff between failed connects (retries, and the background refill). Default 100 millis. */
  readonly connectBackoff?: Duration.DurationInput | undefined
  /** Backoff cap; the delay doubles up to it, with jitter. Default 10 seconds. */
  readonly connectBackoffMax?: Duration.DurationInput | undefined
  /** When the pool's scope closes, how long connections in use have before they are closed. Default 30 seconds. */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
  /**
   * Which idle connection is lent first. `"lifo"` (default): the most recently returned, so hot connections stay
   * warm and surplus ones reach `idleTimeout`. `"fifo"`: the longest idle, so every connection is used and none
   * goes stale behind a firewall.
   */
  readonly reuse?: "lifo" | "fifo" | undefined
  /**
   * The circuit breaker: after this many connect failures in a row (not counting a server's "too many
   * connections"), the pool stops connecting on callers' behalf. Callers that find no idle connection then fail at
   * once with the last `ConnectionError`, while one probe at a time, off the request path, tries to reconnect;
   * the first that succeeds closes the breaker. Default 5; 0 turns the breaker off.
   */
  readonly breakerThreshold?: number | undefined
  /** Delay before the breaker's first probe; it doubles, with jitter, up to `breakerBackoffMax`. Default 500 millis. */
  readonly breakerBackoff?: Duration.DurationInput | undefined
  /** Longest delay between probes. Default 5 seconds. */
  readonly breakerBackoffMax?: Duration.DurationInput | undefined
  /**
   * Overload shedding: when this many callers already wait for a connection to be released, a caller that finds
   * no idle connection and no room to open one fails at once with `PoolOverloaded` instead of joining the queue.
   * Default unlimited (`Infinity`); 0 never queues a caller behind a full pool.
   */
  readonly maxWaiting?: number | undefined
  /**
   * Also shed a caller when the queue's expected wait (callers ahead × the recent mean time a connection is held
   * ÷ connections open) exceeds its `acquireTimeout`: it would most likely time out anyway. Default false.
   */
  readonly shedOnExpectedWait?: boolean | undefined
  /**
   * Leak detection (HikariCP's option of the same name): a connection borrowed for longer than this logs a
   * warning naming the pool, how long it has been held, the borrowing fiber and the span it borrowed under (with
   * the span's source locations, Effect's stack), counted in `stats.leaksSuspected` and the
   * `connection_pool.leaks` counter. Returned later, it logs an info line saying so. The connection is
   * never closed for it. Default off.
   */
  readonly leakDetectionThreshold?: Duration.DurationInput | undefined
  /**
   * What a fiber that already holds a connection from this pool gets when it asks the pool again (a
   * `withConnection` inside a `withConnection`, or a library call that borrows on its own inside your borrow):
   * - `"reuse"` (default): the connection it holds. The inner borrow does not return it; the outer one does, so
   *   code written against `withConnection` composes, and a transaction begun on the outer connection covers the
   *   inner one.
   * - `"fail"`: a `NestedAcquire` error at once.
   * - `"allow"`: a second connection, as any other caller. With `maxSize` fibers each nesting, that deadlocks the
   *   pool until `acquireTimeout`.
   *
   * Only the fiber that borrowed holds the connection: a fiber it forks (`Effect.fork`, the concurrent branches
   * of `Effect.all`, and the fiber `Effect.timeout` and `Effect.race` run their effect in) borrows its own, since
   * using one connection from two fibers at once is unsafe.
   */
  readonly nested?: "reuse" | "fail" | "allow" | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<A, R = never> extends PoolConfig {
  readonly driver: Driver<A, R>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Sizes {
  readonly minSize?: number | undefined
  readonly maxSize?: number | undefined
}

/**
 * What {@link reconfigure} can change while the pool runs: every option but the name. A field left out, or
 * `undefined`, keeps its current value.
 *
 * @since 0.3.0
 * @category models
 */
export interface Reconfiguration extends Omit<PoolConfig, "name"> {}

/**
 * When `layerConfig` reads its `Config` again: on each recurrence of a `Schedule` (the first after its first
 * delay, as `Effect.schedule` runs), or on each element of a `Stream` (a signal: `Stream.fromPubSub`, SIGHUP, a
 * file watcher).
 *
 * @since 0.3.0
 * @category models
 */
export type Reload = Schedule.Schedule<unknown> | Stream.Stream<unknown>

/**
 * @since 0.3.0
 * @category models
 */
export interface LayerConfigOptions {
  /**
   * Re-read the config and apply it with {@link reconfigure}, so that sizes and timeouts follow the config source
   * while the pool runs. The re-read config replaces the whole config (an option no longer set goes back to its
   * default). A read that fails, or a config the pool rejects (`InvalidConfig`, or a changed `name`), is logged as
   * a warning and the pool keeps its current config. The reloading fiber lives in the layer's scope.
   */
  readonly reload?: Reload | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ConnectionPool<A> extends Pipeable {
  readonly [TypeId]: TypeId
  readonly name: string
  /**
   * An idle connection, else a new one while below `maxSize`, else the caller waits in FIFO order for up to
   * `acquireTimeout`. The connection goes back when the caller's scope closes; closing the scope after an
   * interruption or a defect closes the connection instead (its state is unknown).
   */
  readonly get: Effect.Effect<A, PoolError, Scope.Scope>
  /** Like `get`, but never waits: `PoolEmpty` when `maxSize` connections are in use. */
  readonly tryGet: Effect.Effect<A, PoolError, Scope.Scope>
  /**
   * `get` for the duration of `f`. A typed failure of `f` returns the connection; an interruption or a defect
   * closes it.
   */
  withConnection<X, E, R>(f: (conn: A) => Effect.Effect<X, E, R>): Effect.Effect<X, E | PoolError, R>
  /** `tryGet` for the duration of `f`. */
  withConnectionTry<X, E, R>(f: (conn: A) => Effect.Effect<X, E, R>): Effect.Effect<X, E | PoolError, R>
  /**
   * `withConnection` for an operation that takes a callback, for drivers built on them (like pg's
   * `client.query`). `start` begins the operation on the connection and calls `done` once with its exit; the
   * Effect it may return cancels the operation, and runs if the caller is interrupted while it is in flight (the
   * connection is then closed: its state is unknown).
   *
   * A caller that has to wait is not woken just to start its operation: whoever hands it the connection starts
   * it, so the caller wakes once, with the result; and `done` gives the connection back there and then, so the
   * next waiter's operation starts inside it. A `done` called inside `start` (a synchronous driver) has the
   * connection back before the borrow's step ends: the caller never suspends. A typed failure returns the
   * connection; a defect, or a `start` that throws, closes it.
   */
  withConnectionCallback<X, E>(
    start: (conn: A, done: (exit: Exit.Exit<X, E>) => void) => Effect.Effect<void> | void
  ): Effect.Effect<X, E | PoolError>
  /** This connection is closed instead of reused: now if idle, else when it is released. */
  invalidate(conn: A): Effect.Effect<void>
  /** Closes every idle connection; the pool stays open (and refills to `minSize`). */
  readonly drain: Effect.Effect<void>
  /**
   * Idempotent. Waiters and later calls fail with `PoolClosed`; idle connections close now, connections in use
   * when released, or by force after `timeout` (default `shutdownTimeout`). Completes when all are closed.
   */
  shutdown(timeout?: Duration.DurationInput): Effect.Effect<void>
  readonly stats: Effect.Effect<PoolStats>
  /**
   * Changes the limits at runtime. Connections in use are never dropped: above a new `maxSize` they close when
   * released.
   */
  resize(sizes: Sizes): Effect.Effect<void, InvalidConfig>
  /** See {@link reconfigure}. */
  reconfigure(changes: Reconfiguration): Effect.Effect<void, InvalidConfig>
}

/**
 * @since 0.1.0
 * @category refinements
 */
export const isConnectionPool: (u: unknown) => u is ConnectionPool<unknown> = internal.isConnectionPool

/**
 * Builds a pool in the current scope. Connections up to `minSize` open in the background; closing the scope
 * shuts the pool down (see {@link shutdown}).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <A, R = never>(
  options: Options<A, R>
) => Effect.Effect<ConnectionPool<A>, InvalidConfig, Scope.Scope | R> = internal.make

/**
 * @since 0.1.0
 * @category accessors
 */
export const get = <A>(self: ConnectionPool<A>): Effect.Effect<A, PoolError, Scope.Scope> => self.get

/**
 * @since 0.1.0
 * @category accessors
 */
export const tryGet = <A>(self: ConnectionPool<A>): Effect.Effect<A, PoolError, Scope.Scope> => self.tryGet

/**
 * @since 0.1.0
 * @category combinators
 */
export const withConnection: {
  <A, X, E, R>(f: (conn: A) => Effect.Effect<X, E, R>): (self: ConnectionPool<A>) => Effect.Effect<X, E | PoolError, R>
  <A, X, E, R>(self: ConnectionPool<A>, f: (conn: A) => Effect.Effect<X, E, R>): Effect.Effect<X, E | PoolError, R>
} = internal.withConnection

/**
 * @since 0.1.0
 * @category combinators
 */
export const withConnectionTry: {
  <A, X, E, R>(f: (conn: A) => Effect.Effect<X, E, R>): (self: ConnectionPool<A>) => Effect.Effect<X, E | PoolError, R>
  <A, X, E, R>(self: ConnectionPool<A>, f: (conn: A) => Effect.Effect<X, E, R>): Effect.Effect<X, E | PoolError, R>
} = internal.withConnectionTry

/**
 * See {@link ConnectionPool.withConnectionCallback}.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withConnectionCallback: {
  <A, X, E>(
    start: (conn: A, done: (exit: Exit.Exit<X, E>) => void) => Effect.Effect<void> | void
  ): (self: ConnectionPool<A>) => Effect.Effect<X, E | PoolError>
  <A, X, E>(
    self: ConnectionPool<A>,
    start: (conn: A, done: (exit: Exit.Exit<X, E>) => void) => Effect.Effect<void> | void
  ): Effect.Effect<X, E | PoolError>
} = internal.withConnectionCallback

/**
 * @since 0.1.0
 * @category combinators
 */
export const invalidate: {
  <A>(conn: A): (self: ConnectionPool<A>) => Effect.Effect<void>
  <A>(self: ConnectionPool<A>, conn: A): Effect.Effect<void>
} = internal.invalidate

/**
 * @since 0.1.0
 * @category combinators
 */
export const drain = <A>(self: ConnectionPool<A>): Effect.Effect<void> => self.drain

/**
 * @since 0.1.0
 * @category combinators
 */
export const shutdown: {
  (timeout?: Duration.DurationInput): <A>(self: ConnectionPool<A>) => Effect.Effect<void>
  <A>(self: ConnectionPool<A>, timeout?: Duration.DurationInput): Effect.Effect<void>
} = internal.shutdown

/**
 * @since 0.1.0
 * @category accessors
 */
export const stats = <A>(self: ConnectionPool<A>): Effect.Effect<PoolStats> => self.stats

/**
 * @since 0.1.0
 * @category combinators
 */
export const resize: {
  (sizes: Sizes): <A>(self: ConnectionPool<A>) => Effect.Effect<void, InvalidConfig>
  <A>(self: ConnectionPool<A>, sizes: Sizes): Effect.Effect<void, InvalidConfig>
} = internal.resize

/**
 * Changes options while the pool runs. The merged config is checked as `make` checks one: a bad value fails with
 * `InvalidConfig` and changes nothing. No connection in use is dropped.
 *
 * - Sizes apply as with {@link resize}: idle connections above a smaller `maxSize` close now, those in use when
 *   released; a larger `maxSize` opens connections for callers already waiting; `minSize` refills in the background.
 * - A **shorter** `acquireTimeout` also holds for callers already waiting (each waits at most that long from its
 *   arrival); a longer one applies to callers arriving after. Likewise a shorter `maxLifetime` pulls in the
 *   lifetimes of open connections (jittered; in use, they close when released), a longer one applies to
 *   connections opened after.
 * - `idleTimeout`, `maxLifetime` and `keepaliveInterval` are applied by the housekeeper at once (it is woken), not
 *   at its next pass.
 * - `maxWaiting` and `shedOnExpectedWait` decide for the next caller; callers already queued past a lowered
 *   `maxWaiting` keep their places.
 * - The rest is read where it is used: `connectTimeout`, `connectRetries` and the backoffs by the next connect,
 *   `validationBypass` and `validationTimeout` by the next borrow, `reuse` by the next release, the breaker's
 *   options by its next decision, `shutdownTimeout` at shutdown.
 *
 * @example
 * ```ts
 * yield* ConnectionPool.reconfigure(pool, { maxSize: 20, acquireTimeout: "5 seconds" })
 * ```
 *
 * @since 0.3.0
 * @category combinators
 */
export const reconfigure: {
  (changes: Reconfiguration): <A>(self: ConnectionPool<A>) => Effect.Effect<void, InvalidConfig>
  <A>(self: ConnectionPool<A>, changes: Reconfiguration): Effect.Effect<void, InvalidConfig>
} = internal.reconfigure

/**
 * A service tag for one pool, with its layers and accessors as statics. Declare one per pool, so that pools of
 * the same connection type (a primary and a replica) live side by side in one context:
 *
 * ```ts
 * class Primary extends ConnectionPool.Tag("app/Primary")<Primary, Client>() {}
 * class Replica extends ConnectionPool.Tag("app/Replica")<Replica, Client>() {}
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface TagClass<Self, Id extends string, A> extends Context.TagClass<Self, Id, ConnectionPool<A>> {
  readonly layer: <R = never>(options: Options<A, R>) => Layer.Layer<Self, InvalidConfig, R>
  readonly layerConfig: <R = never>(
    driver: Driver<A, R>,
    config: Config.Config.Wrap<PoolConfig>,
    options?: LayerConfigOptions | undefined
  ) => Layer.Layer<Self, ConfigError.ConfigError | InvalidConfig, R>
  readonly get: Effect.Effect<A, PoolError, Scope.Scope | Self>
  readonly tryGet: Effect.Effect<A, PoolError, Scope.Scope | Self>
  readonly withConnection: <X, E, R>(
    f: (conn: A) => Effect.Effect<X, E, R>
  ) => Effect.Effect<X, E | PoolError, R | Self>
  readonly withConnectionTry: <X, E, R>(
    f: (conn: A) => Effect.Effect<X, E, R>
  ) => Effect.Effect<X, E | PoolError, R | Self>
  readonly withConnectionCallback: <X, E>(
    start: (conn: A, done: (exit: Exit.Exit<X, E>) => void) => Effect.Effect<void> | void
  ) => Effect.Effect<X, E | PoolError, Self>
  readonly invalidate: (conn: A) => Effect.Effect<void, never, Self>
  readonly drain: Effect.Effect<void, never, Self>
  readonly shutdown: (timeout?: Duration.DurationInput) => Effect.Effect<void, never, Self>
  readonly stats: Effect.Effect<PoolStats, never, Self>
  readonly resize: (sizes: Sizes) => Effect.Effect<void, InvalidConfig, Self>
  readonly reconfigure: (changes: Reconfiguration) => Effect.Effect<void, InvalidConfig, Self>
}

/**
 * Declares a pool service: `class Db extends ConnectionPool.Tag("app/Db")<Db, Client>() {}`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const Tag = <const Id extends string>(id: Id) => <Self, A>(): TagClass<Self, Id, A> => internal.makeTag(id)

/**
 * Builds a pool as a layer for `tag`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: <I, A, R = never>(
  tag: Context.Tag<I, ConnectionPool<A>>,
  options: Options<A, R>
) => Layer.Layer<I, InvalidConfig, R> = internal.layer

/**
 * Builds a pool as a layer for `tag`, its options read from `Config` (for example environment variables). With
 * `reload`, the config is read again on a schedule or a signal and applied live (see {@link LayerConfigOptions}):
 *
 * ```ts
 * Db.layerConfig(driver, { maxSize: Config.integer("DB_MAX_SIZE") }, { reload: Schedule.spaced("30 seconds") })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: <I, A, R = never>(
  tag: Context.Tag<I, ConnectionPool<A>>,
  driver: Driver<A, R>,
  config: Config.Config.Wrap<PoolConfig>,
  options?: LayerConfigOptions | undefined
) => Layer.Layer<I, ConfigError.ConfigError | InvalidConfig, R> = internal.layerConfig
