import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import { pipeArguments } from "effect/Pipeable"
import { hasProperty } from "effect/Predicate"
import * as Random from "effect/Random"
import * as Scope from "effect/Scope"
import * as STM from "effect/STM"
import * as TQueue from "effect/TQueue"
import * as Tracer from "effect/Tracer"
import * as TRef from "effect/TRef"
import type * as ConnectionPool from "../ConnectionPool.js"
import {
  ConnectionError,
  type InvalidConfig,
  PoolClosed,
  PoolEmpty,
  type PoolError,
  PoolTimeout
} from "../PoolError.js"
import type { PoolStats } from "../PoolStats.js"
import * as metrics from "./metrics.js"
import { backoffDelay, probeDelay, resolve, type Resolved, validateSizes } from "./options.js"
import * as Stack from "./stack.js"

/** @internal */
export const TypeId: ConnectionPool.TypeId = Symbol.for("@connection-pool/core/ConnectionPool") as ConnectionPool.TypeId

/** @internal */
export const isConnectionPool = (u: unknown): u is ConnectionPool.ConnectionPool<unknown> => hasProperty(u, TypeId)

/** The metrics carry the pool's name in their keys already; one shared empty array saves an allocation per update. */
const noTags: ReadonlyArray<never> = []

type Restore = <X, E, R>(effect: Effect.Effect<X, E, R>) => Effect.Effect<X, E, R>

// -----------------------------------------------------------------------------------------------------------------
// State
//
// Everything the pool decides on, the waiters' queue included, lives in one `TRef<State>`, so that an acquire and a
// release are each a single `TRef.modify`. (A `TQueue` of waiters beside it cost two to five more STM steps per
// handoff, and effect 3's TQueue mutates its array in place anyway.) TQueues serve as wake-up signals for the
// background fibers, which must not re-run on every state change as an `STM.retry` on the state would.
//
// These transactions never `retry` and never fail, so each runs once and commits. The plain mutation made inside
// them (a waiter's `status`) relies on that.
// -----------------------------------------------------------------------------------------------------------------

class Entry<A> {
  idleSince: number
  checkedAt: number
  borrowedAt = 0
  uses = 0
  invalid = false
  closed = false
  constructor(readonly conn: A, readonly createdAt: number, readonly expiresAt: number) {
    this.idleSince = createdAt
    this.checkedAt = createdAt
  }
}

/**
 * Everything the pool decides on. A class, not an object literal: a transaction builds the next state with
 * `patched`, and copying a literal with `{ ...s, field }` costs V8 some 20 to 40 times more than this constructor.
 */
class State<A> {
  constructor(
    readonly closed: boolean,
    /** Idle connections, next to lend first: pushed here under `reuse: "lifo"`, refilled from `idleBack`. */
    readonly idle: Stack.Stack<Entry<A>>,
    /** Under `reuse: "fifo"`: returned connections, most recent first, reversed into `idle` when it runs dry. */
    readonly idleBack: Stack.Stack<Entry<A>>,
    readonly idleCount: number,
    /** Open connections, idle or in use. */
    readonly total: number,
    /** Connects in flight. */
    readonly pending: number,
    /** Waiters in arrival order; cancelled ones stay until they reach the front. */
    readonly waiters: Fifo<Waiter<A>>,
    /** Live waiters in the queue. */
    readonly waiting: number,
    readonly minSize: number,
    readonly maxSize: number,
    /** At most this many open: below `maxSize` while the server says it has no room (`atCapacity`). */
    readonly ceiling: number,
    /** Connect failures since the last success; the breaker opens at `breakerThreshold`. */
    readonly failures: number,
    /** The open circuit breaker, or undefined while it is closed. */
    readonly breaker: Breaker | undefined
  ) {}
}

/** An open circuit breaker. Immutable: a transaction that changes it builds a new one. */
class Breaker {
  constructor(
    readonly openedAt: number,
    /** Probes tried since it opened. */
    readonly probes: number,
    readonly nextProbeAt: number,
    readonly last: ConnectionError
  ) {}
}

/** `s` with the fields of `patch` changed. */
const patched = <A>(s: State<A>, patch: Partial<State<A>>): State<A> =>
  new State(
    patch.closed ?? s.closed,
    patch.idle ?? s.idle,
    patch.idleBack ?? s.idleBack,
    patch.idleCount ?? s.idleCount,
    patch.total ?? s.total,
    patch.pending ?? s.pending,
    patch.waiters ?? s.waiters,
    patch.waiting ?? s.waiting,
    patch.minSize ?? s.minSize,
    patch.maxSize ?? s.maxSize,
    patch.ceiling ?? s.ceiling,
    patch.failures ?? s.failures,
    "breaker" in patch ? patch.breaker : s.breaker
  )

const WAITING = 0
const TAKEN = 1
const CANCELLED = 2

/**
 * A caller waiting for a connection. Lighter than a `Deferred` (which copies a prototype per instance, and showed
 * as 35% GC time with 1000 waiting fibers): a result slot and the fiber's resume callback.
 */
class Waiter<A> {
  /** WAITING until a transaction takes it (then it will be completed) or its caller cancels it. */
  status: 0 | 1 | 2 = WAITING
  result: Exit.Exit<Entry<A>, PoolError> | undefined = undefined
  resume: ((exit: Exit.Exit<Entry<A>, PoolError>) => void) | undefined = undefined
  constructor(
    readonly since: number,
    readonly start: bigint,
    readonly deadline: number,
    /** In the queue and counted in `waiting`; `tryGet`'s waiter is neither. */
    readonly queued: boolean,
    /** A connect was started when this waiter arrived. */
    public spawned: boolean
  ) {}

  /** Set for `withConnectionCallback`: whoever hands this waiter a connection starts the operation on it. */
  job: Job<A> | undefined = undefined
  /** Set by the transaction that queued it: connects to start, whether to wake the sweeper, whether to trace. */
  spawn = 0
  wake = false
  traced = false

  /**
   * Called once, by whoever took the waiter in a transaction. Once a job is attached, it gets the failures; a
   * connection goes to `Job.run` instead. (Before, the waiter keeps the result for its caller to find.)
   */
  complete(exit: Exit.Exit<Entry<A>, PoolError>): void {
    if (this.job !== undefined) return this.job.settle(exit as Exit.Exit<never, PoolError>)
    this.result = exit
    const resume = this.resume
    this.resume = undefined
    if (resume !== undefined) resume(exit)
  }

  /** The result, for a canceller that lost the race with the transaction that took this waiter. */
  get outcome(): Effect.Effect<Entry<A>, PoolError> {
    return Effect.async((resume) => {
      if (this.result !== undefined) return resume(this.result)
      this.resume = resume
    })
  }
}

/** A callback-style operation, as `withConnectionCallback` takes it. */
type Start<A> = (conn: A, done: (exit: Exit.Exit<unknown, unknown>) => void) => Effect.Effect<void> | void

/** How a job's caller stops waiting: a pool failure (it never got a connection), or its operation's exit. */
type JobResult = Exit.Exit<Exit.Exit<unknown, unknown>, PoolError>

/**
 * A `withConnectionCallback` operation. Whoever hands its caller a connection starts it right there (`run`), so
 * the caller is woken once, when the operation is done, rather than once for the connection and once more for
 * the operation.
 */
class Job<A> {
  /** The connection it runs on, once started. */
  entry: Entry<A> | undefined = undefined
  /** Its caller was interrupted after a release took it but before the operation started: not started at all. */
  abandoned = false
  finished = false
  canceler: Effect.Effect<void> | void = undefined
  result: JobResult | undefined = undefined
  resume: ((result: JobResult) => void) | undefined = undefined
  /** The `ConnectionPool.acquire` span of a traced wait, ended when the connection is handed over. */
  span: Tracer.Span | undefined = undefined
  constructor(readonly start: Start<A>, readonly clock: Clock.Clock) {}

  settle(result: JobResult): void {
    if (this.result !== undefined) return
    this.endSpan(result)
    this.result = result
    const resume = this.resume
    this.resume = undefined
    if (resume !== undefined) resume(result)
  }

  /** Starts the operation on `entry`; a `start` that throws is a defect of the operation. */
  run(entry: Entry<A>): void {
    this.entry = entry
    this.endSpan(Exit.void)
    const done = (exit: Exit.Exit<unknown, unknown>) => {
      if (this.finished) return
      this.finished = true
      this.settle(Exit.succeed(exit))
    }
    try {
      this.canceler = this.start(entry.conn, done)
    } catch (defect) {
      done(Exit.die(defect))
    }
  }

  endSpan(exit: Exit.Exit<unknown, unknown>): void {
    const span = this.span
    if (span === undefined) return
    this.span = undefined
    span.end(this.clock.unsafeCurrentTimeNanos(), exit)
  }
}

/** An idle connection (the hot path, returned as is), or why there is none yet. */
type Take<A> =
  | Entry<A>
  | Waiter<A>
  | { readonly _tag: "Closed" }
  | { readonly _tag: "Empty" }
  | { readonly _tag: "Breaker" }

/** A release's outcome: handed to this waiter (returned as is), kept idle, or to be closed. */
type Give<A> =
  | Waiter<A>
  | { readonly _tag: "Idle" }
  | {
    readonly _tag: "Destroy"
    readonly spawn: number
    /** Waiters left with nothing to wait for: the breaker is open and this was the last connection. */
    readonly stranded: ReadonlyArray<Waiter<A>>
  }

/** Who opens a connection: a caller's connect, the warm-up and refill, or the breaker's probe. */
type Kind = "waiter" | "background" | "probe"

/** A failed connect's outcome. */
interface Failed<A> {
  readonly recipient: Waiter<A> | undefined
  /** Failed with the breaker's error: it opened with nothing open to wait for. */
  readonly failed: ReadonlyArray<Waiter<A>>
  readonly spawn: number
  /** The server is at capacity: the ceiling dropped and the grower is to look for room later. */
  readonly full: boolean
  /** This failure opened the breaker: the prober is to start. */
  readonly opened: boolean
}

/** A persistent FIFO: pushed onto `back`, popped from `front`, amortised O(1). */
interface Fifo<A> {
  readonly front: Stack.Stack<A>
  readonly back: Stack.Stack<A>
}

const emptyFifo: Fifo<never> = { front: Stack.nil, back: Stack.nil }

const push = <A>(q: Fifo<A>, a: A): Fifo<A> => ({ front: q.front, back: Stack.push(q.back, a) })

/** The oldest live waiter (left in the queue) and the queue without the dead ones before it. */
const peekLive = <A>(q: Fifo<Waiter<A>>): readonly [Waiter<A> | undefined, Fifo<Waiter<A>>] => {
  let front = q.front
  let back = q.back
  for (;;) {
    if (!(front instanceof Stack.Cell)) {
      if (!(back instanceof Stack.Cell)) return [undefined, emptyFifo]
      front = Stack.reverse(back)
      back = Stack.nil
    }
    const cell = front as Stack.Cell<Waiter<A>>
    if (cell.head.status === WAITING) return [cell.head, front === q.front ? q : { front, back }]
    front = cell.tail
  }
}

/** Takes the oldest live waiter, marking it TAKEN: it will be completed. Only called when `waiting > 0`. */
const takeHead = <A>(s: State<A>): readonly [Waiter<A>, State<A>] => {
  const [waiter, q] = peekLive(s.waiters)
  waiter!.status = TAKEN
  const waiters = { front: (q.front as Stack.Cell<Waiter<A>>).tail, back: q.back }
  return [waiter!, patched(s, { waiters, waiting: s.waiting - 1 })]
}

const allOf = <A>(q: Fifo<A>): Array<A> => [...Stack.toArray(q.front), ...Stack.toArray(q.back).reverse()]

const noWaiters: Array<never> = []
const closedTake = { _tag: "Closed" } as const
const emptyTake = { _tag: "Empty" } as const
const breakerTake = { _tag: "Breaker" } as const
const idleGive = { _tag: "Idle" } as const

/** How many connections the pool may have open or opening now. */
const limitOf = <A>(s: State<A>): number => Math.min(s.maxSize, s.ceiling)

/**
 * How many connects to start so that every waiter has one coming, within `maxSize` and the server's ceiling.
 * None while the breaker is open: only its probe connects.
 */
const spawnCount = <A>(s: State<A>, waiting: number): number =>
  s.closed || s.breaker !== undefined ? 0 : Math.max(0, Math.min(waiting - s.pending, limitOf(s) - s.total - s.pending))

const withSpawn = <A>(s: State<A>): readonly [number, State<A>] => {
  const spawn = spawnCount(s, s.waiting)
  return [spawn, spawn === 0 ? s : patched(s, { pending: s.pending + spawn })]
}

/** The idle connections in the order they would be lent. */
const idleList = <A>(s: State<A>): Array<Entry<A>> =>
  s.idleBack === Stack.nil ? Stack.toArray(s.idle) : [...Stack.toArray(s.idle), ...Stack.toArray(s.idleBack).reverse()]

/** A patch that sets the idle connections to `list`, in lending order. */
const idlePatch = <A>(list: ReadonlyArray<Entry<A>>): Partial<State<A>> => ({
  idle: Stack.fromArray(list),
  idleBack: Stack.nil,
  idleCount: list.length
})

/** Every live waiter, taken (marked TAKEN) out of the queue, oldest first. */
const takeAll = <A>(s: State<A>): readonly [Array<Waiter<A>>, State<A>] => {
  const waiters = allOf(s.waiters).filter((w) => w.status === WAITING)
  for (const w of waiters) w.status = TAKEN
  return [waiters, patched(s, { waiters: emptyFifo, waiting: 0 })]
}

/** Counters that never decide anything: plain numbers, read by `stats`. */
class Counters {
  created = 0
  destroyed = 0
  acquired = 0
  hits = 0
  misses = 0
  timeouts = 0
  emptyFailures = 0
  connectFailures = 0
  validationFailures = 0
  waitTotalMs = 0
  waitMaxMs = 0
}

// -----------------------------------------------------------------------------------------------------------------
// The pool
// -----------------------------------------------------------------------------------------------------------------

class PoolImpl<A> implements ConnectionPool.ConnectionPool<A> {
  readonly [TypeId]: ConnectionPool.TypeId = TypeId
  readonly counters = new Counters()
  /** Every open connection, for `invalidate` and for the forced close at the shutdown deadline. */
  readonly entries = new Map<A, Entry<A>>()
  readonly metrics: metrics.PoolMetrics
  readonly shutdownDone = Deferred.unsafeMake<void>(FiberId.none)
  readonly takeTx: Effect.Effect<Take<A>>
  readonly tryTakeTx: Effect.Effect<Take<A>>
  readonly spanOptions: Tracer.SpanOptions
  readonly get: Effect.Effect<A, PoolError, Scope.Scope>
  readonly tryGet: Effect.Effect<A, PoolError, Scope.Scope>
  /** Scratch for the acquire transaction: whether its caller runs under a span. */
  traced = false
  /** Connects in a row that failed at capacity: the grower's backoff. Plain: it decides nothing in a transaction. */
  capacityStreak = 0
  /** Connects begun, and the latest of them that succeeded: the breaker counts only failures begun after it. */
  connects = 0
  lastSuccess = 0

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
    readonly clock: Clock.Clock
  ) {
    this.metrics = metrics.forPool(options.name)
    this.spanOptions = {
      kind: "client",
      captureStackTrace: false,
      attributes: { [metrics.attributes.poolName]: options.name }
    }
    this.publishLimits()
    this.takeTx = this.makeTakeTx()
    this.tryTakeTx = this.makeTryTakeTx()
    this.get = this.scoped(false)
    this.tryGet = this.scoped(true)
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

  publishLimits() {
    this.metrics.max.unsafeUpdate(this.options.maxSize, noTags)
    this.metrics.idleMin.unsafeUpdate(this.options.minSize, noTags)
  }

  /** Every state change goes through here: one `TRef.modify`, gauges published from the new state. */
  modify<B>(f: (s: State<A>) => readonly [B, State<A>]): STM.STM<B> {
    return TRef.modify(this.state, (s) => {
      const result = f(s)
      const next = result[1]
      if (next.idleCount !== s.idleCount || next.total !== s.total) {
        this.metrics.used.unsafeUpdate(next.total - next.idleCount, noTags)
        this.metrics.idle.unsafeUpdate(next.idleCount, noTags)
      }
      if (next.waiting !== s.waiting) this.metrics.pendingRequests.unsafeUpdate(next.waiting, noTags)
      if (next.breaker !== s.breaker) this.metrics.breakerOpen.unsafeUpdate(next.breaker === undefined ? 0 : 1, noTags)
      return result
    })
  }

  snapshot(s: State<A>): PoolStats {
    const c = this.counters
    return {
      name: this.name,
      total: s.total,
      inUse: s.total - s.idleCount,
      idle: s.idleCount,
      pending: s.pending,
      waiting: s.waiting,
      minSize: s.minSize,
      maxSize: s.maxSize,
      closed: s.closed,
      created: c.created,
      destroyed: c.destroyed,
      acquired: c.acquired,
      hits: c.hits,
      misses: c.misses,
      timeouts: c.timeouts,
      emptyFailures: c.emptyFailures,
      connectFailures: c.connectFailures,
      validationFailures: c.validationFailures,
      waitTimeMeanMs: c.acquired === 0 ? 0 : c.waitTotalMs / c.acquired,
      waitTimeMaxMs: c.waitMaxMs,
      breakerOpen: s.breaker !== undefined,
      consecutiveConnectFailures: s.failures,
      ceiling: limitOf(s)
    }
  }

  get stats(): Effect.Effect<PoolStats> {
    return Effect.map(STM.commit(TRef.get(this.state)), (s) => this.snapshot(s))
  }

  // --------------------------------------------------------------------------------------------------- acquire

  /** The acquire transaction: an idle connection, else a place in the queue (and a connect started if room). */
  makeTakeTx(): Effect.Effect<Take<A>> {
    const take = this.modify((s): readonly [Take<A>, State<A>] => {
      if (s.closed) return [closedTake, s]
      if (s.idleCount > 0) return takeIdle(s)
      // breaker open and nothing open to wait for: fail at once rather than queue for a connect that will not come
      if (s.breaker !== undefined && s.total === 0) return [breakerTake, s]
      const waiter = this.waiter(true, false)
      const waiting = s.waiting + 1
      const spawn = spawnCount(s, waiting)
      waiter.spawn = spawn
      waiter.spawned = spawn > 0
      waiter.wake = s.waiting === 0
      waiter.traced = this.traced
      return [waiter, patched(s, { waiters: push(s.waiters, waiter), waiting, pending: s.pending + spawn })]
    })
    return this.commitTraced(take)
  }

  /**
   * Commits an acquire transaction, first noting in `traced` whether the caller runs under a span: read from the
   * transaction's own context, which is cheaper than asking the fiber for it again afterwards. `traced` is written
   * and read within one synchronous run of the transaction.
   */
  commitTraced<X>(tx: STM.STM<X>): Effect.Effect<X> {
    return STM.commit(STM.flatMap(STM.context<never>(), (context) => {
      this.traced = context.unsafeMap.has(Tracer.ParentSpan.key)
      return tx
    }))
  }

  /** `tryGet`'s transaction: never queues; opens a connection for itself when there is room. */
  makeTryTakeTx(): Effect.Effect<Take<A>> {
    return this.commitTraced(this.modify((s): readonly [Take<A>, State<A>] => {
      if (s.closed) return [closedTake, s]
      if (s.idleCount > 0) return takeIdle(s)
      if (s.breaker !== undefined) return [breakerTake, s]
      if (s.total + s.pending >= limitOf(s)) return [emptyTake, s]
      const waiter = this.waiter(false, true)
      waiter.spawn = 1
      waiter.traced = this.traced
      return [waiter, patched(s, { pending: s.pending + 1 })]
    }))
  }

  waiter(queued: boolean, spawned: boolean): Waiter<A> {
    const since = this.now()
    return new Waiter(since, this.clock.unsafeCurrentTimeNanos(), since + this.options.acquireTimeout, queued, spawned)
  }

  /**
   * Acquires a connection and continues with `k`: the continuation is passed in rather than chained, so that a
   * connection served at once from idle (the hot path) costs no extra step. A caller that has to wait suspends
   * until a giver hands it a connection, unless `onWait` says otherwise (`withConnectionCallback`).
   */
  acquire<X, E, R>(
    restore: Restore,
    exclusive: boolean,
    k: (entry: Entry<A>) => Effect.Effect<X, E, R>,
    onWait?: (waiter: Waiter<A>) => Effect.Effect<X, E | PoolError, R>
  ): Effect.Effect<X, E | PoolError, R> {
    return Effect.flatMap(exclusive ? this.tryTakeTx : this.takeTx, (take): Effect.Effect<X, E | PoolError, R> => {
      if (take instanceof Entry) {
        const now = this.now()
        if (this.servable(take, now)) return k(this.borrowed(take, now, undefined)) // the hot path
        const retry = this.acquire(restore, exclusive, succeedEntry)
        return Effect.flatMap(this.checkout(restore, take, this.clock.unsafeCurrentTimeNanos(), retry), k)
      }
      if (take instanceof Waiter) {
        if (onWait !== undefined && !this.validatesHandoffs) return onWait(take)
        const wait = this.waitFor(take, this.await(restore, take)) // borrowed counted by the giver
        const handed = take.traced ? this.span(wait) : wait
        if (!this.validatesHandoffs) return Effect.flatMap(handed, k)
        return Effect.flatMap(handed, (entry) =>
          entry.uses <= 1 // opened for this caller: the connect just proved it
            ? k(entry)
            : Effect.flatMap(this.revalidate(restore, entry, this.acquire(restore, exclusive, succeedEntry)), k))
      }
      switch (take._tag) {
        case "Closed":
          return Effect.fail(new PoolClosed({ pool: this.name }))
        case "Breaker":
          return Effect.flatMap(STM.commit(TRef.get(this.state)), (s) => Effect.fail(this.breakerError(s)))
        case "Empty":
          this.counters.emptyFailures++
          return Effect.flatMap(this.stats, (stats) => Effect.fail(new PoolEmpty({ pool: this.name, stats })))
      }
    })
  }

  /** Around a wait: the connects it asked for start, and the sweeper wakes if the queue was empty. */
  waitFor<X, E>(waiter: Waiter<A>, wait: Effect.Effect<X, E>): Effect.Effect<X, E> {
    const started = waiter.spawn === 0
      ? wait
      : Effect.zipRight(this.spawn(waiter.spawn, waiter.queued ? undefined : waiter), wait)
    return waiter.wake ? Effect.zipRight(STM.commit(TQueue.offer(this.wake, true)), started) : started
  }

  /**
   * `withConnectionCallback`: like `withConnection`, but the operation is a callback, started on the connection
   * by whoever hands it over, so that a caller who waits is woken once, with the operation's result.
   */
  callback<X, E>(start: Start<A>): Effect.Effect<X, E | PoolError> {
    return Effect.uninterruptibleMask((restore) => {
      const job = new Job(start, this.clock)
      const waited = this.acquire(restore, false, (entry) => {
        job.run(entry)
        return this.awaitJob(restore, job, undefined)
      }, (waiter) => this.waitForJob(restore, job, waiter))
      return Effect.flatMap(Effect.exit(waited), (exit): Effect.Effect<X, E | PoolError> => {
        // the operation's own exit; or a pool failure, or an interruption, before or while it ran
        const result = (Exit.isSuccess(exit) ? exit.value : exit) as Exit.Exit<X, E | PoolError>
        const entry = job.entry
        // never started: nothing to give back (a giver that took it for a caller since interrupted gives it back)
        if (entry === undefined) return result
        return this.release(entry, Exit.isFailure(result) ? result.cause : undefined, result)
      })
    })
  }

  /** A job's caller waits: whoever hands it a connection will start the job. */
  waitForJob(restore: Restore, job: Job<A>, waiter: Waiter<A>): Effect.Effect<Exit.Exit<unknown, unknown>, PoolError> {
    waiter.job = job
    // a giver that took the waiter before the job was attached (this fiber may yield between the transaction and
    // this step) completed it as a plain waiter: start the job here, or pass on its failure
    const early = waiter.result
    if (early !== undefined) {
      if (Exit.isSuccess(early)) job.run(early.value)
      else job.settle(early as Exit.Exit<never, PoolError>)
    }
    const wait = this.waitFor(waiter, this.awaitJob(restore, job, waiter))
    if (!waiter.traced) return wait
    return Effect.flatMap(Effect.makeSpan("ConnectionPool.acquire", this.spanOptions), (span) => {
      job.span = span
      // handed over, or failed, while the span was being made
      if (job.entry !== undefined) job.endSpan(Exit.void)
      else if (job.result !== undefined) job.endSpan(job.result)
      return wait
    })
  }

  /**
   * Suspends until the job's caller gets a pool failure or its operation's exit; an interruption cancels either
   * (after `restore`, as in `await`).
   */
  awaitJob(
    restore: Restore,
    job: Job<A>,
    waiter: Waiter<A> | undefined
  ): Effect.Effect<Exit.Exit<unknown, unknown>, PoolError> {
    return Effect.catchAllCause(
      restore(Effect.async<Exit.Exit<unknown, unknown>, PoolError>((resume) => {
        if (job.result !== undefined) return resume(job.result)
        job.resume = resume
      })),
      (cause) =>
        Cause.isInterrupted(cause)
          ? Effect.zipRight(this.cancelJob(job, waiter), Effect.failCause(cause))
          : Effect.failCause(cause)
    )
  }

  /**
   * A job's caller is interrupted. Still queued: it leaves the queue. Taken by a giver that has not started it yet:
   * marked abandoned, so the giver takes the connection back. Running: its own canceler runs; the caller then
   * releases the connection as interrupted, which closes it.
   */
  cancelJob(job: Job<A>, waiter: Waiter<A> | undefined): Effect.Effect<void> {
    const running = Effect.suspend(() => {
      if (job.entry === undefined) {
        job.abandoned = true
        job.endSpan(Exit.interrupt(FiberId.none))
        return Effect.void
      }
      return job.finished || job.canceler === undefined ? Effect.void : job.canceler
    })
    if (waiter === undefined) return running
    return Effect.flatMap(STM.commit(this.dequeueTx(waiter)), (dequeued) => {
      if (!dequeued) return running
      job.endSpan(Exit.interrupt(FiberId.none))
      return Effect.void
    })
  }

  /** An idle connection can go out as is: not expired, checked recently enough, and not vetoed by the driver. */
  servable(entry: Entry<A>, now: number): boolean {
    return now < entry.expiresAt &&
      (this.driver.validate === undefined || now - entry.checkedAt < this.options.validationBypass) &&
      (this.driver.reusable === undefined || this.driver.reusable(entry.conn))
  }

  /** Counts a borrow. `start` is when the caller began to wait (or validate); `undefined` when it did not. */
  borrowed(entry: Entry<A>, now: number, start: bigint | undefined): Entry<A> {
    const c = this.counters
    const waitedMs = start === undefined ? 0 : Number(this.clock.unsafeCurrentTimeNanos() - start) / 1e6
    c.acquired++
    if (entry.uses === 0) c.misses++
    else c.hits++
    c.waitTotalMs += waitedMs
    if (waitedMs > c.waitMaxMs) c.waitMaxMs = waitedMs
    this.metrics.waitTime.unsafeUpdate(waitedMs / 1000, noTags)
    entry.uses++
    entry.borrowedAt = now
    return entry
  }

  /** Takes back the counts of a borrow whose caller was interrupted as it was handed the connection. */
  unborrowed(entry: Entry<A>): void {
    const c = this.counters
    c.acquired--
    entry.uses--
    if (entry.uses === 0) c.misses--
    else c.hits--
  }

  /**
   * An idle connection goes out unless it expired, the driver knows it is broken, or it sat idle past the bypass
   * window and fails validation; then it is closed and `retry` (a whole new acquire, counted on its own) runs.
   */
  checkout(
    restore: Restore,
    entry: Entry<A>,
    start: bigint,
    retry: Effect.Effect<Entry<A>, PoolError>
  ): Effect.Effect<Entry<A>, PoolError> {
    if (this.now() >= entry.expiresAt || (this.driver.reusable !== undefined && !this.driver.reusable(entry.conn))) {
      return Effect.zipRight(this.retire(entry), retry)
    }
    if (this.driver.validate === undefined) return Effect.succeed(this.borrowed(entry, this.now(), start))
    return Effect.flatMap(Effect.exit(restore(this.validate(entry))), (exit) => {
      if (Exit.isFailure(exit)) return Effect.zipRight(this.retire(entry), Effect.failCause(exit.cause)) // interrupted
      if (!exit.value) return Effect.zipRight(this.retire(entry), retry)
      entry.checkedAt = this.now()
      return Effect.succeed(this.borrowed(entry, entry.checkedAt, start))
    })
  }

  /**
   * `validationBypass: 0` means every borrow is validated, a connection handed straight to a waiter included (it
   * was checked when released, zero time ago, which no bypass window of zero covers).
   */
  get validatesHandoffs(): boolean {
    return this.options.validationBypass === 0 && this.driver.validate !== undefined
  }

  /**
   * Validates a connection a giver handed this caller (and already counted as its borrow). A broken one is closed
   * and `retry` runs; either way the giver's count is taken back.
   */
  revalidate(
    restore: Restore,
    entry: Entry<A>,
    retry: Effect.Effect<Entry<A>, PoolError>
  ): Effect.Effect<Entry<A>, PoolError> {
    return Effect.flatMap(Effect.exit(restore(this.validate(entry))), (exit) => {
      if (Exit.isSuccess(exit) && exit.value) {
        entry.checkedAt = this.now()
        return Effect.succeed(entry)
      }
      this.unborrowed(entry)
      return Effect.zipRight(this.retire(entry), Exit.isFailure(exit) ? Effect.failCause(exit.cause) : retry)
    })
  }

  validate(entry: Entry<A>): Effect.Effect<boolean> {
    return this.driver.validate!(entry.conn).pipe(
      Effect.timeoutTo({ duration: this.options.validationTimeout, onSuccess: (ok) => ok, onTimeout: () => false }),
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : Effect.as(Effect.logDebug(cause), false)
      ),
      Effect.tap((ok) => {
        if (ok) return Effect.void
        this.counters.validationFailures++
        return Effect.logDebug("connection failed validation; closing it")
      })
    )
  }

  /**
   * Suspends until a transaction completes the waiter. An interruption cancels it: handled after `restore` rather
   * than as the async's canceler, because an interruption already pending when the caller turns interruptible
   * fails `restore` at once, before any canceler is registered, and the waiter must still leave the queue.
   */
  await(restore: Restore, waiter: Waiter<A>): Effect.Effect<Entry<A>, PoolError> {
    return Effect.catchAllCause(
      restore(Effect.async<Entry<A>, PoolError>((resume) => {
        if (waiter.result !== undefined) return resume(waiter.result)
        waiter.resume = resume
      })),
      (cause) =>
        Cause.isInterrupted(cause)
          ? Effect.zipRight(this.cancel(waiter), Effect.failCause(cause))
          : Effect.failCause(cause)
    )
  }

  /** A waiter gives up. If a transaction took it first, the connection it is being handed goes back. */
  cancel(waiter: Waiter<A>): Effect.Effect<void> {
    return Effect.flatMap(
      STM.commit(this.dequeueTx(waiter)),
      (cancelled) =>
        cancelled ? Effect.void : Effect.flatMap(
          Effect.exit(waiter.outcome),
          (exit) => {
            if (Exit.isFailure(exit)) return Effect.void
            this.unborrowed(exit.value) // handed over, but its caller was gone: not an acquisition after all
            return this.give(exit.value, false, undefined)
          }
        )
    )
  }

  /** Takes a waiter that is still waiting out of the queue (true), or tells that a transaction took it (false). */
  dequeueTx(waiter: Waiter<A>): STM.STM<boolean> {
    return this.modify((s): readonly [boolean, State<A>] => {
      if (waiter.status !== WAITING) return [false, s]
      waiter.status = CANCELLED
      return [true, waiter.queued ? patched(s, { waiting: s.waiting - 1 }) : s]
    })
  }

  scoped(exclusive: boolean): Effect.Effect<A, PoolError, Scope.Scope> {
    // `Scope.addFinalizerExit` rather than `Effect.addFinalizer`, which captures and restores the whole context
    return Effect.flatMap(Effect.scope, (scope) =>
      Effect.uninterruptibleMask((restore) =>
        this.acquire(restore, exclusive, (entry) =>
          Effect.as(
            Scope.addFinalizerExit(scope, (exit) => this.release(entry, Exit.isFailure(exit) ? exit.cause : undefined)),
            entry.conn
          ))
      ))
  }

  use<X, E, R>(exclusive: boolean, f: (conn: A) => Effect.Effect<X, E, R>): Effect.Effect<X, E | PoolError, R> {
    return Effect.uninterruptibleMask((restore) =>
      this.acquire(restore, exclusive, (entry) =>
        Effect.flatMap(
          Effect.exit(restore(applied(f, entry.conn))),
          (exit) => this.release(entry, exit._tag === "Failure" ? exit.cause : undefined, exit)
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
    return this.callback(start as Start<A>)
  }

  /**
   * An acquisition that waits or opens a connection is traced, as a child of the caller's span. Without a parent
   * span there is no trace to join, so none is made (OpenTelemetry's instrumentations call this
   * `requireParentSpan`): a span costs as much as the rest of a contended borrow. One served at once from idle is
   * not traced either; the wait-time histogram counts every acquisition.
   */
  span<X, E>(acquire: Effect.Effect<X, E>): Effect.Effect<X, E> {
    // `useSpan`, not `withSpan`: nothing inside needs the span as its parent, and installing one costs 3×
    return Effect.useSpan("ConnectionPool.acquire", this.spanOptions, () => acquire)
  }

  // --------------------------------------------------------------------------------------------------- release

  /**
   * Called when the borrower is done (from a finalizer or a continuation, so it runs its checks right away), with
   * the cause if its use failed.
   */
  release<X = void, E = never>(
    entry: Entry<A>,
    failure: Cause.Cause<unknown> | undefined,
    then: Effect.Effect<X, E> = Effect.void as Effect.Effect<any>
  ): Effect.Effect<X, E> {
    if (entry.closed) return then // closed by force at the shutdown deadline
    const now = this.now()
    this.metrics.useTime.unsafeUpdate((now - entry.borrowedAt) / 1000, noTags)
    if (failure !== undefined && (Cause.isInterrupted(failure) || Cause.isDie(failure))) {
      entry.invalid = true // its user was interrupted or died mid-use: its state is unknown
    } else if (this.driver.reusable !== undefined && !this.driver.reusable(entry.conn)) {
      entry.invalid = true
    }
    entry.idleSince = now
    entry.checkedAt = now
    return this.give(entry, false, undefined, now, then)
  }

  /**
   * The release transaction, also taken by new connections (`fresh`): straight to `target` or the oldest waiter,
   * else idle; closed instead when the pool is shut, the connection invalid or expired, or the pool shrank.
   * `then` runs after (passed in rather than chained: one step fewer for every release).
   */
  give<X = void, E = never>(
    entry: Entry<A>,
    fresh: boolean,
    target: Waiter<A> | undefined,
    now = this.now(),
    then: Effect.Effect<X, E> = Effect.void as Effect.Effect<any>
  ): Effect.Effect<X, E> {
    const expired = now >= entry.expiresAt
    const tx = this.modify((s0): readonly [Give<A>, State<A>] => {
      // a connect that succeeded clears the failure streak and closes the breaker
      const s = fresh
        ? patched(s0, { total: s0.total + 1, pending: s0.pending - 1, failures: 0, breaker: undefined })
        : s0
      if (s.closed || entry.invalid || expired || s.total > s.maxSize) {
        let rest = patched(s, { total: s.total - 1 })
        let stranded: Array<Waiter<A>> = noWaiters
        if (rest.breaker !== undefined && rest.total === 0 && rest.waiting > 0) [stranded, rest] = takeAll(rest)
        const [spawn, next] = withSpawn(rest)
        return [{ _tag: "Destroy", spawn, stranded }, next]
      }
      if (target !== undefined && target.status === WAITING) {
        target.status = TAKEN
        return [target, s]
      }
      if (s.waiting > 0) return takeHead(s)
      return [
        idleGive,
        this.options.reuse === "lifo"
          ? patched(s, { idle: Stack.push(s.idle, entry), idleCount: s.idleCount + 1 })
          : patched(s, { idleBack: Stack.push(s.idleBack, entry), idleCount: s.idleCount + 1 })
      ]
    })
    return Effect.flatMap(STM.commit(tx), (give): Effect.Effect<X, E> => {
      if (give instanceof Waiter) { // a handoff
        const job = give.job
        if (job === undefined) {
          give.complete(Exit.succeed(this.borrowed(entry, now, give.start)))
          return then
        }
        if (job.abandoned) return this.give(entry, false, undefined, now, then)
        this.borrowed(entry, now, give.start)
        job.run(entry)
        return then
      }
      if (give._tag === "Idle") return then
      const destroy = Effect.zipRight(this.spawn(give.spawn, undefined), this.destroyed(entry))
      if (give.stranded.length === 0) return Effect.zipRight(destroy, then)
      return Effect.zipRight(this.failStranded(give.stranded), Effect.zipRight(destroy, then))
    })
  }

  /** Fails waiters that the open breaker leaves with nothing to wait for. */
  failStranded(waiters: ReadonlyArray<Waiter<A>>): Effect.Effect<void> {
    if (waiters.length === 0) return Effect.void
    return Effect.map(STM.commit(TRef.get(this.state)), (s) => {
      const error = this.breakerError(s)
      for (const waiter of waiters) waiter.complete(Exit.fail(error))
    })
  }

  /** Takes a connection out of the pool for good. */
  retire(entry: Entry<A>): Effect.Effect<void> {
    entry.invalid = true
    return this.give(entry, false, undefined)
  }

  /** Closes a connection already taken out of the pool's count, then lets the refill fiber replace it. */
  destroyed(entry: Entry<A>): Effect.Effect<void> {
    return Effect.zipRight(this.close(entry), this.signalRefill)
  }

  /** Closes one connection, exactly once. */
  close(entry: Entry<A>): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (entry.closed) return Effect.void
      entry.closed = true
      this.entries.delete(entry.conn)
      this.counters.destroyed++
      return this.driver.close(entry.conn).pipe(
        Effect.catchAllCause((cause) => Effect.logDebug("closing a connection failed", cause)),
        Effect.zipRight(Effect.logDebug("connection closed")),
        Effect.annotateLogs("pool", this.name)
      )
    })
  }

  get signalRefill(): Effect.Effect<void> {
    return Effect.suspend(() => this.options.minSize === 0 ? Effect.void : STM.commit(TQueue.offer(this.refill, true)))
  }

  // --------------------------------------------------------------------------------------------------- connect

  connectOnce(): Effect.Effect<A, ConnectionError | PoolTimeout> {
    return this.driver.connect.pipe(
      Effect.timeout(this.options.connectTimeout),
      Effect.catchTag("TimeoutException", () =>
        Effect.flatMap(
          this.stats,
          (stats) =>
            Effect.fail(this.timeoutError("connecting", "connectTimeout", this.options.connectTimeout, stats))
        ))
    )
  }

  /** One connect, retried `retries` times with jittered exponential backoff on `ConnectionError`. */
  connect(retries: number): Effect.Effect<A, ConnectionError | PoolTimeout> {
    const attempt = (n: number): Effect.Effect<A, ConnectionError | PoolTimeout> =>
      Effect.catchAll(this.connectOnce(), (error) => {
        if (error._tag !== "ConnectionError") return Effect.fail(error)
        // `cause` is not an own enumerable field of an Error: carried over by name
        if (n > retries) {
          return Effect.fail(new ConnectionError({ ...error, cause: error.cause, attempts: n, pool: this.name }))
        }
        this.counters.connectFailures++
        return Effect.flatMap(
          Random.next,
          (r) => Effect.zipRight(Effect.sleep(backoffDelay(this.options, n, r)), attempt(n + 1))
        )
      })
    return attempt(1)
  }

  /** Starts `n` connects in the pool's fiber set, so that no caller's interruption abandons one. */
  spawn(n: number, target: Waiter<A> | undefined): Effect.Effect<void> {
    if (n === 0) return Effect.void
    const create = Effect.interruptible(this.create(target, "waiter"))
    return n === 1
      ? Effect.asVoid(FiberSet.run(this.creators, create))
      : Effect.repeatN(FiberSet.run(this.creators, create), n - 1)
  }

  /**
   * Opens one connection for a slot already reserved in `pending` and hands it on like a release. A failure goes
   * to `target` (tryGet) or the oldest waiter; a background connect (warm-up, refill) fails alone. Interruption
   * (shutdown) still gives the slot back.
   */
  create(target: Waiter<A> | undefined, kind: Kind): Effect.Effect<boolean> {
    return Effect.uninterruptibleMask((restore) => {
      const start = this.clock.unsafeCurrentTimeNanos()
      const seq = ++this.connects
      const retries = kind === "waiter" ? this.options.connectRetries : 0
      return Effect.flatMap(
        Effect.zip(Effect.exit(restore(this.connect(retries))), Random.next),
        ([exit, random]) => {
          if (Exit.isFailure(exit)) return Effect.as(this.connectFailed(exit.cause, target, kind, random, seq), false)
          this.capacityStreak = 0
          if (seq > this.lastSuccess) this.lastSuccess = seq
          const now = this.now()
          const lifetime = this.options.maxLifetime * (1 - this.options.maxLifetimeJitter * random)
          const entry = new Entry(exit.value, now, now + lifetime)
          this.entries.set(exit.value, entry)
          this.counters.created++
          this.metrics.createTime.unsafeUpdate(Number(this.clock.unsafeCurrentTimeNanos() - start) / 1e9, noTags)
          return Effect.as(Effect.zipRight(Effect.logDebug("connection opened"), this.give(entry, true, target)), true)
        }
      )
    }).pipe(Effect.annotateLogs("pool", this.name))
  }

  /**
   * A connect failed. Its slot is given back and the error goes to `target` (tryGet) or the oldest waiter, except:
   * - a server at capacity (`atCapacity`) while connections of ours are open: the pool's ceiling drops to what is
   *   open and the waiter stays queued for a release; the grower probes for room later;
   * - the failure that opens the breaker fails, besides its own recipient, every waiter when nothing is open to
   *   wait for (the breaker's error says so); a probe's failure only reschedules the next probe.
   */
  connectFailed(
    cause: Cause.Cause<ConnectionError | PoolTimeout>,
    target: Waiter<A> | undefined,
    kind: Kind,
    random: number,
    seq: number
  ): Effect.Effect<void> {
    const interrupted = Cause.isInterruptedOnly(cause)
    if (!interrupted) this.counters.connectFailures++
    const failure = Cause.failureOption(cause)
    const error: PoolError = interrupted
      ? new PoolClosed({ pool: this.name })
      : failure._tag === "Some"
      ? failure.value
      : new ConnectionError({ reason: "the driver's connect died", cause: Cause.squash(cause), pool: this.name })
    const now = this.now()
    const tx = this.modify((s0): readonly [Failed<A>, State<A>] => {
      let s: State<A> = patched(s0, { pending: s0.pending - 1 })
      const full = error._tag === "ConnectionError" && error.atCapacity === true && s.total > 0
      if (full) s = patched(s, { ceiling: Math.max(1, s.total + s.pending) })
      // a connect that began before the last one that succeeded says nothing about the server now
      else if (!interrupted && seq > this.lastSuccess) s = this.failedOnce(s, error, now, random, kind)
      let recipient: Waiter<A> | undefined = undefined
      if (target !== undefined && target.status === WAITING) {
        target.status = TAKEN
        recipient = target
      } else if (target === undefined && kind === "waiter" && s.waiting > 0 && !full) {
        ;[recipient, s] = takeHead(s)
      }
      const opened = s.breaker !== undefined && s0.breaker === undefined
      let failed: Array<Waiter<A>> = noWaiters
      if (opened && s.total === 0) [failed, s] = takeAll(s)
      const [spawn, next] = withSpawn(s)
      return [{ recipient, failed, spawn, full, opened }, next]
    })
    return Effect.flatMap(STM.commit(tx), ({ failed, full, opened, recipient, spawn }) => {
      const log = interrupted ? Effect.void : Effect.logDebug("connect failed", error)
      recipient?.complete(Exit.fail(error))
      return Effect.zipRight(log, Effect.suspend(() => {
        if (full) {
          this.capacityStreak++
          return Effect.zipRight(STM.commit(TQueue.offer(this.growth, true)), this.spawn(spawn, undefined))
        }
        if (!opened) return this.spawn(spawn, undefined)
        return Effect.all([
          Effect.logDebug("circuit breaker opened: connects keep failing", error),
          this.failStranded(failed),
          STM.commit(TQueue.offer(this.probe, true)),
          this.spawn(spawn, undefined)
        ], { discard: true })
      }))
    })
  }

  /** Counts one connect failure: the streak grows, and the breaker opens at the threshold or reschedules a probe. */
  failedOnce(s: State<A>, error: PoolError, now: number, random: number, kind: Kind): State<A> {
    const failures = s.failures + 1
    const last = error._tag === "ConnectionError" ? error : s.breaker?.last ??
      new ConnectionError({ reason: error.message, cause: error, pool: this.name })
    if (s.breaker !== undefined) {
      if (kind !== "probe") return patched(s, { failures })
      const probes = s.breaker.probes + 1
      const next = now + probeDelay(this.options, probes + 1, random)
      return patched(s, { failures, breaker: new Breaker(s.breaker.openedAt, probes, next, last) })
    }
    if (failures < this.options.breakerThreshold) return patched(s, { failures })
    return patched(s, { failures, breaker: new Breaker(now, 0, now + probeDelay(this.options, 1, random), last) })
  }

  /** What a caller that the open breaker turns away gets: the last connect's error, saying so. */
  breakerError(s: State<A>): ConnectionError {
    const b = s.breaker
    if (b === undefined) return new ConnectionError({ reason: "the circuit breaker closed meanwhile", pool: this.name })
    return new ConnectionError({
      ...b.last,
      cause: b.last.cause,
      pool: this.name,
      breaker: { openedAt: b.openedAt, failures: s.failures, nextProbeInMs: Math.max(0, Math.ceil(b.nextProbeAt - this.now())) }
    })
  }

  // --------------------------------------------------------------------------------------------------- background

  /** Fails waiters whose `acquireTimeout` passed. The queue is in arrival order, so its head expires first. */
  get sweeper(): Effect.Effect<never> {
    const head = this.modify((s): readonly [Waiter<A> | undefined, State<A>] => {
      const [head, waiters] = peekLive(s.waiters)
      return [head, waiters === s.waiters ? s : patched(s, { waiters })]
    })
    const step = Effect.flatMap(STM.commit(head), (head) => {
      if (head === undefined) return STM.commit(TQueue.take(this.wake))
      const now = this.now()
      if (head.deadline > now) return Effect.sleep(head.deadline - now)
      return Effect.uninterruptible(Effect.flatMap(STM.commit(this.expireTx(now)), (expired) =>
        Effect.map(this.stats, (stats) => {
          for (const waiter of expired) {
            this.counters.timeouts++
            this.metrics.timeouts.unsafeUpdate(1, noTags)
            const phase = waiter.spawned && stats.pending > 0 ? "connecting" : "waiting"
            waiter.complete(Exit.fail(this.timeoutError(phase, "acquireTimeout", now - waiter.since, stats)))
          }
        })))
    })
    return Effect.forever(step)
  }

  /** Takes every waiter at the head of the queue whose deadline has passed. */
  expireTx(now: number): STM.STM<Array<Waiter<A>>> {
    return this.modify((s0) => {
      const expired: Array<Waiter<A>> = []
      let s = s0
      for (;;) {
        const [head] = peekLive(s.waiters)
        if (head === undefined || head.deadline > now) break
        const [waiter, next] = takeHead(s)
        expired.push(waiter)
        s = next
      }
      return [expired, s]
    })
  }

  get housekeepingInterval(): number {
    const o = this.options
    return Math.max(1, Math.min(30_000, o.idleTimeout / 2, o.maxLifetime / 2, o.keepaliveInterval / 2))
  }

  /** Closes connections idle past `idleTimeout` (keeping `minSize`) or past their lifetime; probes keepalives. */
  get housekeeper(): Effect.Effect<never> {
    const pass = Effect.suspend(() => {
      const now = this.now()
      const o = this.options
      const tx = this.modify((s): readonly [readonly [Array<Entry<A>>, Array<Entry<A>>], State<A>] => {
        if (s.closed || s.idleCount === 0) return [[[], []], s]
        const idle = idleList(s)
        const close: Array<Entry<A>> = []
        const probe: Array<Entry<A>> = []
        let total = s.total
        for (const e of longestIdleFirst(idle)) {
          if (now >= e.expiresAt || (now - e.idleSince >= o.idleTimeout && total > s.minSize)) {
            close.push(e)
            total--
          } else if (now - e.checkedAt >= o.keepaliveInterval) probe.push(e)
        }
        if (close.length === 0 && probe.length === 0) return [[close, probe], s]
        const keep = idle.filter((e) => !close.includes(e) && !probe.includes(e))
        return [[close, probe], patched(s, { ...idlePatch(keep), total })]
      })
      return Effect.flatMap(STM.commit(tx), ([close, probe]) =>
        Effect.zipRight(
          Effect.forEach(close, (e) => this.destroyed(e), { discard: true }),
          Effect.forEach(probe, (e) =>
            Effect.flatMap(this.validate(e), (ok) => {
              if (!ok) return this.retire(e)
              e.checkedAt = this.now()
              return this.give(e, false, undefined)
            }), { discard: true })
        ))
    })
    return Effect.forever(Effect.zipRight(Effect.suspend(() => Effect.sleep(this.housekeepingInterval)), pass))
  }

  /** Keeps `minSize` connections open, one connect at a time, backing off while connects fail. */
  get maintainer(): Effect.Effect<never> {
    const reserve = this.modify((s): readonly [boolean, State<A>] =>
      // while the breaker is open its probe connects, and refills when one gets through
      !s.closed && s.breaker === undefined && s.total + s.pending < s.minSize
        ? [true, patched(s, { pending: s.pending + 1 })]
        : [false, s]
    )
    const fill = (failures: number): Effect.Effect<void> =>
      Effect.flatMap(STM.commit(reserve), (reserved) => {
        if (!reserved) return Effect.void
        return Effect.flatMap(this.create(undefined, "background"), (ok) => {
          if (ok) return fill(0)
          return Effect.flatMap(Random.next, (r) =>
            Effect.zipRight(Effect.sleep(backoffDelay(this.options, failures + 1, r)), fill(failures + 1)))
        })
      })
    return Effect.forever(Effect.zipRight(STM.commit(TQueue.take(this.refill)), fill(0)))
  }

  /**
   * While the breaker is open: one probe connect at a time, off the request path, each at its scheduled time. The
   * first that succeeds closes the breaker (in `give`) and its connection serves the next caller.
   */
  get prober(): Effect.Effect<never> {
    const reserve = this.modify((s): readonly [number | undefined, State<A>] => {
      if (s.closed || s.breaker === undefined) return [undefined, s]
      const wait = Math.ceil(s.breaker.nextProbeAt - this.now()) // whole millis: the clock may round a sleep down
      if (wait > 0) return [wait, s]
      if (s.total + s.pending >= s.maxSize) return [this.options.breakerBackoff, s] // full: nothing to probe with
      return [0, patched(s, { pending: s.pending + 1 })]
    })
    const loop: Effect.Effect<void> = Effect.flatMap(STM.commit(reserve), (wait) => {
      if (wait === undefined) return Effect.void
      if (wait > 0) return Effect.zipRight(Effect.sleep(wait), loop)
      const probe = Effect.flatMap(this.create(undefined, "probe"), (ok) =>
        ok ? Effect.zipRight(Effect.logDebug("circuit breaker closed: a probe connected"), this.signalRefill) : Effect.void)
      return Effect.zipRight(probe, loop)
    })
    return Effect.forever(Effect.zipRight(STM.commit(TQueue.take(this.probe)), loop))
  }

  /**
   * While the server has no room for more of our connections (`ceiling` below `maxSize`): after a jittered
   * backoff, and only if callers are waiting for a connection, lets one more connect try. It raises the ceiling by
   * one; a connect that fails at capacity again lowers it and lengthens the backoff.
   */
  get grower(): Effect.Effect<never> {
    const raise = this.modify((s): readonly [readonly [boolean, number], State<A>] => {
      if (s.closed || s.ceiling >= s.maxSize) return [[false, 0], patched(s, { ceiling: Infinity })]
      if (s.waiting <= s.pending) return [[true, 0], s] // nobody would use the room: look again later
      const [spawn, next] = withSpawn(patched(s, { ceiling: s.ceiling + 1 }))
      return [[true, spawn], next]
    })
    const loop: Effect.Effect<void> = Effect.flatMap(
      Random.next,
      (r) =>
        Effect.zipRight(
          Effect.sleep(backoffDelay(this.options, Math.max(1, this.capacityStreak), r)),
          Effect.flatMap(STM.commit(raise), ([again, spawn]) =>
            again ? Effect.zipRight(this.spawn(spawn, undefined), loop) : Effect.void)
        )
    )
    return Effect.forever(Effect.zipRight(STM.commit(TQueue.take(this.growth)), loop))
  }

  // --------------------------------------------------------------------------------------------------- admin

  invalidate(conn: A): Effect.Effect<void> {
    return Effect.suspend(() => {
      const entry = this.entries.get(conn)
      if (entry === undefined) return Effect.void
      entry.invalid = true
      const tx = this.modify((s): readonly [boolean, State<A>] => {
        const idle = idleList(s).filter((e) => e !== entry)
        if (idle.length === s.idleCount) return [false, s] // in use: closed when released
        return [true, patched(s, { ...idlePatch(idle), total: s.total - 1 })]
      })
      return Effect.flatMap(STM.commit(tx), (wasIdle) => wasIdle ? this.destroyed(entry) : Effect.void)
    })
  }

  get drain(): Effect.Effect<void> {
    const tx = this.modify((s): readonly [Array<Entry<A>>, State<A>] =>
      s.idleCount === 0 ? [[], s] : [idleList(s), patched(s, { ...idlePatch([]), total: s.total - s.idleCount })]
    )
    return Effect.flatMap(STM.commit(tx), (idle) => Effect.forEach(idle, (e) => this.destroyed(e), { discard: true }))
  }

  resize(sizes: ConnectionPool.Sizes): Effect.Effect<void, InvalidConfig> {
    return Effect.flatMap(validateSizes(sizes.minSize, sizes.maxSize, this.options), ({ maxSize, minSize }) => {
      const tx = this.modify((s): readonly [readonly [Array<Entry<A>>, number], State<A>] => {
        const idle = idleList(s)
        const excess = Math.max(0, Math.min(idle.length, s.total - maxSize))
        const close = longestIdleFirst(idle).slice(0, excess)
        const [spawn, next] = withSpawn(patched(s, {
          minSize,
          maxSize,
          ...(excess === 0 ? {} : idlePatch(idle.filter((e) => !close.includes(e)))),
          total: s.total - excess
        }))
        return [[close, spawn], next]
      })
      return Effect.uninterruptible(Effect.flatMap(STM.commit(tx), ([close, spawn]) => {
        this.options = { ...this.options, minSize, maxSize }
        this.publishLimits()
        return Effect.all([
          Effect.forEach(close, (e) => this.close(e), { discard: true }),
          this.spawn(spawn, undefined),
          this.signalRefill
        ], { discard: true })
      }))
    })
  }

  shutdown(timeout?: Duration.DurationInput): Effect.Effect<void> {
    const tx = this.modify((s): readonly [readonly [Array<Entry<A>>, Array<Waiter<A>>] | undefined, State<A>] => {
      if (s.closed) return [undefined, s]
      const [waiters, rest] = takeAll(s)
      return [[idleList(s), waiters], patched(rest, { closed: true, ...idlePatch([]), total: s.total - s.idleCount })]
    })
    const settled = STM.commit(
      STM.flatMap(TRef.get(this.state), (s) => STM.check(() => s.total === 0 && s.pending === 0))
    )
    return Effect.uninterruptible(Effect.flatMap(STM.commit(tx), (first) => {
      if (first === undefined) return Deferred.await(this.shutdownDone)
      const [idle, waiters] = first
      const deadline = timeout === undefined ? this.options.shutdownTimeout : Duration.toMillis(timeout)
      const closed = new PoolClosed({ pool: this.name })
      return Effect.all([
        Effect.logDebug("shutting down"),
        Effect.sync(() => waiters.forEach((w) => w.complete(Exit.fail(closed)))),
        Effect.forEach(idle, (e) => this.close(e), { discard: true }),
        FiberSet.clear(this.creators),
        Effect.interruptible(settled).pipe(
          Effect.timeoutTo({ duration: deadline, onSuccess: () => true, onTimeout: () => false }),
          Effect.flatMap((settled) => settled ? Effect.void : this.closeInUse)
        ),
        Effect.logDebug("shut down"),
        Deferred.succeed(this.shutdownDone, undefined)
      ], { discard: true }).pipe(Effect.annotateLogs("pool", this.name))
    }))
  }

  /** At the shutdown deadline: connections still in use are closed under their users. */
  get closeInUse(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const open = Array.from(this.entries.values()).filter((e) => !e.closed)
      return Effect.zipRight(
        STM.commit(this.modify((s) => [undefined, patched(s, { total: s.total - open.length })])),
        Effect.forEach(open, (e) => this.close(e), { discard: true })
      )
    })
  }

  timeoutError(
    phase: "waiting" | "connecting",
    limit: "acquireTimeout" | "connectTimeout",
    waitedMs: number,
    stats: PoolStats
  ) {
    return new PoolTimeout({
      pool: this.name,
      phase,
      limit,
      timeout: Duration.millis(this.options[limit]),
      waited: Duration.millis(waitedMs),
      stats
    })
  }
}

/** Idle connections, the one idle longest first. */
const longestIdleFirst = <A>(idle: ReadonlyArray<Entry<A>>): Array<Entry<A>> =>
  idle.slice().sort((a, b) => a.idleSince - b.idleSince)

/** Takes the next idle connection. Only called when `idleCount > 0`. */
const takeIdle = <A>(s: State<A>): readonly [Take<A>, State<A>] => {
  if (s.idle instanceof Stack.Cell) return [s.idle.head, patched(s, { idle: s.idle.tail, idleCount: s.idleCount - 1 })]
  const idle = Stack.reverse(s.idleBack) as Stack.Cell<Entry<A>>
  return [idle.head, patched(s, { idle: idle.tail, idleBack: Stack.nil, idleCount: s.idleCount - 1 })]
}

const succeedEntry = <A>(entry: Entry<A>): Effect.Effect<Entry<A>> => Effect.succeed(entry)

/** `f(conn)`, with a callback that throws instead of returning an Effect turned into that Effect's defect. */
const applied = <A, X, E, R>(f: (conn: A) => Effect.Effect<X, E, R>, conn: A): Effect.Effect<X, E, R> => {
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
    const state = yield* TRef.make(
      new State<A>(
        false,
        Stack.nil,
        Stack.nil,
        0,
        0,
        0,
        emptyFifo,
        0,
        resolved.minSize,
        resolved.maxSize,
        Infinity,
        0,
        undefined
      )
    )
    const refill = yield* TQueue.sliding<true>(1)
    const wake = yield* TQueue.sliding<true>(1)
    const probe = yield* TQueue.sliding<true>(1)
    const growth = yield* TQueue.sliding<true>(1)
    const creators = yield* FiberSet.make<boolean>()
    const clock = yield* Effect.clock
    const pool = new PoolImpl(resolved, driver, state, refill, wake, probe, growth, creators, clock)
    // finalizers run last-in first-out: the background fibers stop, then the pool shuts down, then the fiber set
    yield* Effect.addFinalizer(() => pool.shutdown())
    yield* Effect.forkScoped(Effect.interruptible(pool.sweeper))
    yield* Effect.forkScoped(Effect.interruptible(pool.housekeeper))
    yield* Effect.forkScoped(Effect.interruptible(pool.maintainer))
    yield* Effect.forkScoped(Effect.interruptible(pool.prober))
    yield* Effect.forkScoped(Effect.interruptible(pool.grower))
    yield* pool.signalRefill
    yield* Effect.logDebug("pool created")
    return pool
  }).pipe(Effect.annotateLogs("pool", options.name ?? "default"))

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
  config: Config.Config.Wrap<ConnectionPool.PoolConfig>
): Layer.Layer<I, ConfigError.ConfigError | InvalidConfig, R> =>
  Layer.scoped(tag, Effect.flatMap(Config.unwrap(config), (c) => make({ ...c, driver })))

/** @internal */
export const makeTag = (id: string): any => {
  const tag: any = Context.Tag(id)<any, ConnectionPool.ConnectionPool<any>>()
  const use = <X>(f: (pool: ConnectionPool.ConnectionPool<any>) => X) => Effect.flatMap(tag, f as any)
  tag.layer = (options: ConnectionPool.Options<any, any>) => layer(tag, options)
  tag.layerConfig = (driver: ConnectionPool.Driver<any, any>, config: Config.Config.Wrap<ConnectionPool.PoolConfig>) =>
    layerConfig(tag, driver, config)
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
export const shutdown = dual(
  (args) => isConnectionPool(args[0]),
  <A>(self: ConnectionPool.ConnectionPool<A>, timeout?: Duration.DurationInput) => self.shutdown(timeout)
)
