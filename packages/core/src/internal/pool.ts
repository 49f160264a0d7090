import type * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as FiberSet from "effect/FiberSet"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import { pipeArguments } from "effect/Pipeable"
import { hasProperty } from "effect/Predicate"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as STM from "effect/STM"
import type * as Tracer from "effect/Tracer"
import * as TQueue from "effect/TQueue"
import * as TRef from "effect/TRef"
import type * as ConnectionPool from "../ConnectionPool.js"
import type { InvalidConfig, PoolError } from "../PoolError.js"
import type { PoolStats } from "../PoolStats.js"
import { callback, releaseInDone, waitFailed } from "./callback.js"
import {
  acquireIn,
  makeCheckInTransition,
  makeTakeTransition,
  makeTakeTx,
  makeTryTakeTransition,
  makeTryTakeTx,
  releaseNow
} from "./handoff.js"
import type { Borrow } from "./leak.js"
import * as lifecycle from "./lifecycle.js"
import * as metrics from "./metrics.js"
import * as nested from "./nested.js"
import { resolve, type Resolved } from "./options.js"
import { type Committer, makeCommitter } from "./commit.js"
import * as live from "./reconfigure.js"
import { type Entry, initial, patched, type State } from "./state.js"
import * as stats from "./stats.js"
import { maskedStep, outcomes, verify as verifySteps } from "./step.js"
import type { Placed, Take } from "./transitions.js"
import type { Job, Outcome, Start } from "./waiter.js"

// The pool: its fields, and its public methods, each a few lines over the internal modules:
// - `state.ts`, `transitions.ts`: the state and its transitions (the only place plain fields are written under STM)
// - `waiter.ts`: waiters and `withConnectionCallback`'s jobs
// - `handoff.ts`: acquire, release, and the arrival of a new connection
// - `step.ts`: a borrow's shape in as few fiber steps as effect allows: the uninterruptible step it starts with,
//   the wait it suspends in (its handler a frame pushed on the fiber), the two handlers it ends with
// - `checkout.ts`: validating a connection before it is lent, and trying again when it is broken
// - `deadline.ts`: one `acquireTimeout` over waiting, connecting and validating; what `PoolTimeout` reports
// - `callback.ts`: the `withConnectionCallback` path
// - `connections.ts`: connect, spawn, create, a failed connect, close
// - `background.ts`: the sweeper, housekeeper, maintainer, prober and grower fibers
// - `lifecycle.ts`: start, invalidate, drain, resize, shutdown
// - `reconfigure.ts`: reconfigure, and `layerConfig`'s reload
// - `overload.ts`: overload shedding (`maxWaiting`, `shedOnExpectedWait`)
// - `nested.ts`: the borrow paths that know their fiber (nested acquire; who borrowed, for `leak.ts`)
// - `leak.ts`: leak detection
// - `stats.ts`: counters, the one `modify` that publishes gauges, `stats`

/** @internal */
export const TypeId: ConnectionPool.TypeId = Symbol.for("@connection-pool/core/ConnectionPool") as ConnectionPool.TypeId

/** @internal */
export const isConnectionPool = (u: unknown): u is ConnectionPool.ConnectionPool<unknown> => hasProperty(u, TypeId)

/** The class of effect's live clock: a pool on it reads durations from `performance.now()`. */
const liveClock = Clock.make().constructor

/** @internal */
export class PoolImpl<A> implements ConnectionPool.ConnectionPool<A> {
  readonly [TypeId]: ConnectionPool.TypeId = TypeId
  readonly counters = new stats.Counters()
  /** Every open connection, for `invalidate` and for the forced close at the shutdown deadline. */
  readonly entries = new Map<A, Entry<A>>()
  readonly metrics: metrics.PoolMetrics
  readonly shutdownDone = Deferred.unsafeMake<void>(FiberId.none)
  /** The acquire transition (`handoff.makeTakeTransition`), and it committed from the caller's fiber. */
  readonly takeTransition: (s: State<A>) => readonly [Take<A>, State<A>]
  readonly takeTx: Effect.Effect<Take<A>>
  readonly tryTakeTransition: (s: State<A>) => readonly [Take<A>, State<A>]
  readonly tryTakeTx: Effect.Effect<Take<A>>
  readonly spanOptions: Tracer.SpanOptions
  readonly get: Effect.Effect<A, PoolError, Scope.Scope>
  readonly tryGet: Effect.Effect<A, PoolError, Scope.Scope>
  /** What each fiber holds from this pool, keyed by the fiber (see `nested.ts`). */
  readonly holds = new WeakMap<object, nested.Hold<A>>()
  /** Borrows out, while leak detection is on. */
  readonly borrows = new Map<Entry<A>, Borrow<A>>()
  /** Borrows go through `nested.ts`: unless `nested: "allow"` and leak detection is off. */
  readonly fiberAware: boolean
  /**
   * Applies a transition to `state` as one transaction, synchronously, from a fiber or from a driver's callback:
   * the hot path's commit (`stats.transact` adds the gauges). Transitions that compose with other STM values
   * (background fibers, shutdown) go through `STM.commit` on the same `TRef` instead.
   */
  readonly commit: Committer<State<A>>
  /** A `withConnectionCallback` job's `done` gives its connection back through this (see `callback.ts`). */
  readonly releaseInDone: (job: Job<A>, exit: Exit.Exit<unknown, unknown>) => Outcome
  /** A `withConnectionCallback` job's wait failed (see `callback.waitFailed`). */
  readonly waitFailed: (job: Job<A>, cause: Cause.Cause<unknown>) => Outcome
  /** Scratch for the acquire transaction: whether its caller runs under a span. */
  traced = false
  /** Scratch for the release transaction (`handoff.checkInNow`): the connection coming back, and whether expired. */
  checkingIn: Entry<A> | undefined = undefined
  checkingInExpired = false
  readonly checkInTransition: (s: State<A>) => readonly [Placed<A>, State<A>]
  /** Connects in a row that failed at capacity: the grower's backoff. Plain: it decides nothing in a transaction. */
  capacityStreak = 0
  /** Connects begun, and the latest of them that succeeded: the breaker counts only failures begun after it. */
  connects = 0
  lastSuccess = 0
  /** The config as given (durations as written, defaults not applied), which `reconfigure` merges changes into. */
  config: ConnectionPool.PoolConfig = {}
  /** Completed, and replaced, by `reconfigure`: wakes background fibers asleep on a time from the old options. */
  retimed = Deferred.unsafeMake<void>(FiberId.none)
  readonly reconfiguring = Effect.unsafeMakeSemaphore(1)

  constructor(
    public options: Resolved,
    readonly driver: ConnectionPool.Driver<A>,
    readonly state: TRef.TRef<State<A>>,
    /** Wakes the refill fiber when the pool may be below `minSize`. */
    readonly refill: TQueue.TQueue<true>,
    /** Wakes the sweeper when a waiter joins an empty queue. */
    readonly wake: TQueue.TQueue<true>,
    /** Wakes the prober when the breaker opens. */
    readonly probe: TQueue.TQueue<true>,
    /** Wakes the grower when the server ran out of room. */
    readonly growth: TQueue.TQueue<true>,
    readonly creators: FiberSet.FiberSet<boolean>,
    readonly clock: Clock.Clock,
    /** Commits the hot path's transitions on `state` without the STM journal (see `commit.ts`), when it can. */
    committer: Committer<State<A>> | undefined,
    /** The runtime of the scope that made the pool: commits through STM, from anywhere, when `committer` cannot. */
    runtime: Runtime.Runtime<never>
  ) {
    const runSync = Runtime.runSync(runtime)
    this.preciseMs = clock.constructor === liveClock
      ? () => performance.now()
      : () => Number(clock.unsafeCurrentTimeNanos()) / 1e6
    this.commit = committer ?? ((f) => runSync(STM.commit(TRef.modify(state, f))))
    this.releaseInDone = (job, exit) => releaseInDone(this, job, exit)
    this.waitFailed = (job, cause) => waitFailed(this, job, cause)
    this.metrics = metrics.forPool(options.name)
    this.spanOptions = {
      kind: "client",
      captureStackTrace: false,
      attributes: { [metrics.attributes.poolName]: options.name }
    }
    stats.publishLimits(this)
    this.takeTransition = makeTakeTransition(this)
    this.checkInTransition = makeCheckInTransition(this)
    this.takeTx = makeTakeTx(this)
    this.tryTakeTransition = makeTryTakeTransition(this)
    this.tryTakeTx = makeTryTakeTx(this)
    this.fiberAware = nested.fiberAware(this)
    this.get = this.fiberAware ? nested.scoped(this, false) : this.scoped(false)
    this.tryGet = this.fiberAware ? nested.scoped(this, true) : this.scoped(true)
  }

  get name() {
    return this.options.name
  }

  pipe() {
    return pipeArguments(this, arguments)
  }

  now() {
    return this.clock.unsafeCurrentTimeMillis()
  }

  /**
   * Milliseconds with sub-millisecond precision, for durations only (a wait, a validation): `performance.now()`
   * on effect's live clock (no `bigint` per read, as `unsafeCurrentTimeNanos` makes), else the clock's own
   * nanoseconds (a `TestClock`, or a user's). Set in the constructor.
   */
  readonly preciseMs: () => number

  get stats(): Effect.Effect<PoolStats> {
    return stats.stats(this)
  }

  scoped(neverWait: boolean): Effect.Effect<A, PoolError, Scope.Scope> {
    // `Scope.addFinalizerExit` rather than `Effect.addFinalizer`, which captures and restores the whole context
    return maskedStep<A, PoolError, never>((restore, fiber) => {
      const scope = Context.unsafeGet(fiber.currentContext, Scope.Scope)
      return acquireIn(this, restore, neverWait, fiber, (entry) =>
        Effect.as(
          Scope.addFinalizerExit(
            scope,
            (exit) => releaseNow(this, entry, Exit.isFailure(exit) ? exit.cause : undefined, Effect.void)
          ),
          entry.conn
        ))
    }) as Effect.Effect<A, PoolError, Scope.Scope>
  }

  use<X, E, R>(neverWait: boolean, f: (conn: A) => Effect.Effect<X, E, R>): Effect.Effect<X, E | PoolError, R> {
    if (this.fiberAware) return nested.use(this, neverWait, f)
    return maskedStep<X, E | PoolError, R>((restore, fiber) =>
      acquireIn(this, restore, neverWait, fiber, (entry) =>
        Effect.matchCauseEffect(
          restore(applied(f, entry.conn)),
          outcomes(
            (cause) => releaseNow(this, entry, cause, Effect.failCause(cause)),
            (x: X) => releaseNow(this, entry, undefined, Effect.succeed(x))
          )
        ))
    )
  }

  withConnection<X, E, R>(f: (conn: A) => Effect.Effect<X, E, R>) {
    return this.use(false, f)
  }

  withConnectionTry<X, E, R>(f: (conn: A) => Effect.Effect<X, E, R>) {
    return this.use(true, f)
  }

  withConnectionCallback<X, E>(
    start: (conn: A, done: (exit: Exit.Exit<X, E>) => void) => Effect.Effect<void> | void
  ): Effect.Effect<X, E | PoolError> {
    return callback(this, start as Start<A>)
  }

  invalidate(conn: A): Effect.Effect<void> {
    return lifecycle.invalidate(this, conn)
  }

  get drain(): Effect.Effect<void> {
    return lifecycle.drain(this)
  }

  resize(sizes: ConnectionPool.Sizes): Effect.Effect<void, InvalidConfig> {
    return lifecycle.resize(this, sizes)
  }

  reconfigure(changes: ConnectionPool.Reconfiguration): Effect.Effect<void, InvalidConfig> {
    return live.reconfigure(this, changes)
  }

  shutdown(timeout?: Duration.DurationInput): Effect.Effect<void> {
    return lifecycle.shutdown(this, timeout)
  }
}

/** `f(conn)`, with a callback that throws instead of returning an Effect turned into that Effect's defect. */
/** @internal */
export const applied = <A, X, E, R>(f: (conn: A) => Effect.Effect<X, E, R>, conn: A): Effect.Effect<X, E, R> => {
  try {
    return f(conn)
  } catch (defect) {
    return Effect.die(defect)
  }
}

// -----------------------------------------------------------------------------------------------------------------
// Constructors
// -----------------------------------------------------------------------------------------------------------------

/** @internal */
export const make = <A, R>(
  options: ConnectionPool.Options<A, R>
): Effect.Effect<ConnectionPool.ConnectionPool<A>, InvalidConfig, Scope.Scope | R> =>
  Effect.gen(function*() {
    const resolved = yield* resolve(options)
    const context = yield* Effect.context<R>()
    const driver: ConnectionPool.Driver<A> = {
      connect: Effect.provide(options.driver.connect, context),
      close: options.driver.close,
      validate: options.driver.validate,
      reusable: options.driver.reusable
    }
    const state = yield* TRef.make(initial<A>(resolved.minSize, resolved.maxSize))
    const refill = yield* TQueue.sliding<true>(1)
    const wake = yield* TQueue.sliding<true>(1)
    const probe = yield* TQueue.sliding<true>(1)
    const growth = yield* TQueue.sliding<true>(1)
    const creators = yield* FiberSet.make<boolean>()
    const clock = yield* Effect.clock
    const runtime = yield* Effect.runtime<never>()
    const scheduler = yield* FiberRef.get(FiberRef.currentScheduler)
    const committer = yield* verified(makeCommitter(state, scheduler), state)
    yield* verifySteps
    const pool = new PoolImpl(resolved, driver, state, refill, wake, probe, growth, creators, clock, committer, runtime)
    pool.config = live.poolConfigOf(options, resolved)
    yield* lifecycle.start(pool)
    yield* Effect.logDebug("pool created")
    return pool
  }).pipe(Effect.annotateLogs("pool", options.name ?? "default"))

/**
 * A committer whose write an STM read then sees (and that leaves the state as it was), else `undefined`: the pool
 * then commits its hot path through STM.
 */
const verified = <A>(
  committer: Committer<State<A>> | undefined,
  state: TRef.TRef<State<A>>
): Effect.Effect<Committer<State<A>> | undefined> => {
  if (committer === undefined) return Effect.succeed(undefined)
  const written = committer((s) => {
    const copy = patched(s, {})
    return [copy, copy]
  })
  return Effect.map(STM.commit(TRef.get(state)), (seen) => seen === written ? committer : undefined)
}

/** @internal */
export const layer = <I, A, R>(
  tag: Context.Tag<I, ConnectionPool.ConnectionPool<A>>,
  options: ConnectionPool.Options<A, R>
) =>
  Layer.scoped(tag, make(options))

/** @internal */
export const layerConfig = <I, A, R>(
  tag: Context.Tag<I, ConnectionPool.ConnectionPool<A>>,
  driver: ConnectionPool.Driver<A, R>,
  config: Config.Config.Wrap<ConnectionPool.PoolConfig>,
  options?: ConnectionPool.LayerConfigOptions | undefined
): Layer.Layer<I, ConfigError.ConfigError | InvalidConfig, R> =>
  Layer.scoped(
    tag,
    Effect.flatMap(Config.unwrap(config), (c) =>
      Effect.tap(make({ ...c, driver }), (pool) =>
        options?.reload === undefined ? Effect.void : live.reloading(pool as PoolImpl<A>, config, options.reload)))
  )

/** @internal */
export const makeTag = (id: string): any => {
  const tag: any = Context.Tag(id)<any, ConnectionPool.ConnectionPool<any>>()
  const use = <X>(f: (pool: ConnectionPool.ConnectionPool<any>) => X) => Effect.flatMap(tag, f as any)
  tag.layer = (options: ConnectionPool.Options<any, any>) => layer(tag, options)
  tag.layerConfig = (
    driver: ConnectionPool.Driver<any, any>,
    config: Config.Config.Wrap<ConnectionPool.PoolConfig>,
    options?: ConnectionPool.LayerConfigOptions
  ) => layerConfig(tag, driver, config, options)
  tag.get = use((pool) => pool.get)
  tag.tryGet = use((pool) => pool.tryGet)
  tag.withConnection = (f: any) => use((pool) => pool.withConnection(f))
  tag.withConnectionTry = (f: any) => use((pool) => pool.withConnectionTry(f))
  tag.withConnectionCallback = (start: any) => use((pool) => pool.withConnectionCallback(start))
  tag.invalidate = (conn: unknown) => use((pool) => pool.invalidate(conn))
  tag.drain = use((pool) => pool.drain)
  tag.shutdown = (timeout?: Duration.DurationInput) => use((pool) => pool.shutdown(timeout))
  tag.stats = use((pool) => pool.stats)
  tag.resize = (sizes: ConnectionPool.Sizes) => use((pool) => pool.resize(sizes))
  tag.reconfigure = (changes: ConnectionPool.Reconfiguration) => use((pool) => pool.reconfigure(changes))
  return tag
}

// -----------------------------------------------------------------------------------------------------------------
// Combinators
// -----------------------------------------------------------------------------------------------------------------

/** @internal */
export const withConnection = dual(
  2,
  <A, X, E, R>(self: ConnectionPool.ConnectionPool<A>, f: (conn: A) => Effect.Effect<X, E, R>) =>
    self.withConnection(f)
)

/** @internal */
export const withConnectionCallback = dual(
  2,
  <A, X, E>(
    self: ConnectionPool.ConnectionPool<A>,
    start: (conn: A, done: (exit: Exit.Exit<X, E>) => void) => Effect.Effect<void> | void
  ) => self.withConnectionCallback(start)
)

/** @internal */
export const withConnectionTry = dual(
  2,
  <A, X, E, R>(self: ConnectionPool.ConnectionPool<A>, f: (conn: A) => Effect.Effect<X, E, R>) =>
    self.withConnectionTry(f)
)

/** @internal */
export const invalidate = dual(2, <A>(self: ConnectionPool.ConnectionPool<A>, conn: A) => self.invalidate(conn))

/** @internal */
export const resize = dual(
  2,
  <A>(self: ConnectionPool.ConnectionPool<A>, sizes: ConnectionPool.Sizes) => self.resize(sizes)
)

/** @internal */
export const reconfigure = dual(
  2,
  <A>(self: ConnectionPool.ConnectionPool<A>, changes: ConnectionPool.Reconfiguration) => self.reconfigure(changes)
)

/** @internal */
export const shutdown = dual(
  (args) => isConnectionPool(args[0]),
  <A>(self: ConnectionPool.ConnectionPool<A>, timeout?: Duration.DurationInput) => self.shutdown(timeout)
)
