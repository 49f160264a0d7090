import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as STM from "effect/STM"
import * as TQueue from "effect/TQueue"
import * as Tracer from "effect/Tracer"
import * as TRef from "effect/TRef"
import { PoolClosed, PoolEmpty, type PoolError } from "../PoolError.js"
import { checkout, revalidate, validatesHandoffs } from "./checkout.js"
import { breakerError, destroyed, failStranded, spawn } from "./connections.js"
import { budgetFrom, expireAt } from "./deadline.js"
import { overloaded, recordUse, shed } from "./overload.js"
import type { PoolImpl } from "./pool.js"
import { Entry, limitOf, type State } from "./state.js"
import { modify, noTags, publishing, stats } from "./stats.js"
import { suspend } from "./step.js"
import * as T from "./transitions.js"
import { DONE_IN_START, RELEASED_IN_DONE, Waiter } from "./waiter.js"

// The handoff: an acquire takes an idle connection or queues a waiter; a connection coming back (a release) or
// newly opened (an arrival) goes straight to the oldest waiter, else idle. Each is one transaction; what it decided
// (a waiter to complete, a connection to close) is acted on after it commits.

/** @internal */
export type Restore = <X, E, R>(effect: Effect.Effect<X, E, R>) => Effect.Effect<X, E, R>

/** A new waiter, its deadline `acquireTimeout` from now. @internal */
export const newWaiter = <A>(pool: PoolImpl<A>, queued: boolean, spawned: boolean): Waiter<A> => {
  const since = pool.now()
  return new Waiter(since, pool.preciseMs(), since + pool.options.acquireTimeout, queued, spawned)
}

/**
 * The acquire transition: an idle connection, else a place in the queue (and a connect started if room). Reads
 * `pool.traced`, which its committer sets just before. @internal
 */
export const makeTakeTransition = <A>(pool: PoolImpl<A>): (s: State<A>) => readonly [T.Take<A>, State<A>] =>
  publishing(pool, (s): readonly [T.Take<A>, State<A>] => {
    if (s.closed) return [T.closedTake, s]
    if (s.idleCount > 0) return T.takeIdle(s)
    // breaker open and nothing open to wait for: fail at once rather than queue for a connect that will not come
    if (s.breaker !== undefined && s.total === 0) return [T.breakerTake, s]
    const refused = shed(pool, s)
    if (refused !== undefined) return [refused, s]
    return T.enqueue(s, newWaiter(pool, true, false), pool.traced)
  })

/** The acquire transaction, committed from the caller's fiber. @internal */
export const makeTakeTx = <A>(pool: PoolImpl<A>): Effect.Effect<T.Take<A>> => committedTraced(pool, pool.takeTransition)

/** `tryGet`'s transition: never queues; opens a connection for itself when there is room. @internal */
export const makeTryTakeTransition = <A>(pool: PoolImpl<A>): (s: State<A>) => readonly [T.Take<A>, State<A>] =>
  publishing(pool, (s): readonly [T.Take<A>, State<A>] => {
    if (s.closed) return [T.closedTake, s]
    if (s.idleCount > 0) return T.takeIdle(s)
    if (s.breaker !== undefined) return [T.breakerTake, s]
    if (s.total + s.pending >= limitOf(s)) return [T.emptyTake, s]
    return T.reserveFor(s, newWaiter(pool, false, true), pool.traced)
  })

/** `tryGet`'s transaction, committed from the caller's fiber. @internal */
export const makeTryTakeTx = <A>(pool: PoolImpl<A>): Effect.Effect<T.Take<A>> =>
  committedTraced(pool, pool.tryTakeTransition)

/**
 * Commits an acquire transition (`PoolImpl.commit`), first noting in `traced` whether the caller runs under a
 * span, read from the fiber's context. `traced` is written and read within one synchronous step.
 *
 * @internal
 */
export const committedTraced = <A, X>(
  pool: PoolImpl<A>,
  tx: (s: State<A>) => readonly [X, State<A>]
): Effect.Effect<X> => Effect.withFiberRuntime((fiber) => Exit.succeed(commitTraced(pool, fiber, tx)))

/** `committedTraced`'s step, for a caller that has its fiber at hand already. @internal */
export const commitTraced = <A, X>(
  pool: PoolImpl<A>,
  fiber: Fiber.RuntimeFiber<any, any>,
  tx: (s: State<A>) => readonly [X, State<A>]
): X => {
  pool.traced = fiber.currentContext.unsafeMap.has(Tracer.ParentSpan.key)
  return pool.commit(tx)
}

/**
 * Acquires a connection and continues with `k`: the continuation is passed in rather than chained, so that a
 * connection served at once from idle (the hot path) costs no extra step. A caller that has to wait suspends
 * until a release or an arrival hands it a connection, unless `onWait` says otherwise (`withConnectionCallback`).
 * `neverWait` (`tryGet`): fail with `PoolEmpty` rather than queue.
 *
 * @internal
 */
export const acquire = <A, X, E, R>(
  pool: PoolImpl<A>,
  restore: Restore,
  neverWait: boolean,
  k: (entry: Entry<A>) => Effect.Effect<X, E, R>,
  onWait?: (waiter: Waiter<A>) => Effect.Effect<X, E | PoolError, R>
): Effect.Effect<X, E | PoolError, R> =>
  Effect.flatMap(neverWait ? pool.tryTakeTx : pool.takeTx, (take) => decided(pool, restore, neverWait, take, k, onWait))

/**
 * `acquire` for a caller already in a step of its own fiber, uninterruptible (inside `uninterruptibleMask` and
 * `withFiberRuntime`): the transaction commits right here, one step and one continuation fewer. @internal
 */
export const acquireIn = <A, X, E, R>(
  pool: PoolImpl<A>,
  restore: Restore,
  neverWait: boolean,
  fiber: Fiber.RuntimeFiber<any, any>,
  k: (entry: Entry<A>) => Effect.Effect<X, E, R>
): Effect.Effect<X, E | PoolError, R> =>
  decided(
    pool,
    restore,
    neverWait,
    commitTraced(pool, fiber, neverWait ? pool.tryTakeTransition : pool.takeTransition),
    k,
    undefined
  )

/** What the acquire transaction decided, acted on. */
const decided = <A, X, E, R>(
  pool: PoolImpl<A>,
  restore: Restore,
  neverWait: boolean,
  take: T.Take<A>,
  k: (entry: Entry<A>) => Effect.Effect<X, E, R>,
  onWait: ((waiter: Waiter<A>) => Effect.Effect<X, E | PoolError, R>) | undefined
): Effect.Effect<X, E | PoolError, R> => {
  if (take instanceof Entry) {
    const now = pool.now()
    if (servable(pool, take, now)) return k(borrowed(pool, take, now, undefined)) // the hot path
    return Effect.flatMap(checkout(pool, restore, neverWait, take, budgetFrom(pool, now)), k)
  }
  if (take instanceof Waiter) {
    if (onWait !== undefined && !validatesHandoffs(pool)) return onWait(take)
    return Effect.flatMap(waitAs(pool, restore, take), k) // borrowed counted by the giver
  }
  return refused(pool, take)
}

/**
 * A caller that waits for a release or an arrival; then, under `validationBypass: 0`, the check of what it got.
 *
 * @internal
 */
export const waitAs = <A>(
  pool: PoolImpl<A>,
  restore: Restore,
  waiter: Waiter<A>
): Effect.Effect<Entry<A>, PoolError> => {
  // the sweeper watches the queue in arrival order: a tryGet's waiter, and one put back at its head, time themselves
  const own = !waiter.queued || waiter.budget !== undefined
  const wait = waitFor(pool, waiter, own ? awaitBy(pool, restore, waiter) : awaitWaiter(pool, restore, waiter))
  const handed = waiter.traced ? span(pool, wait) : wait
  if (!validatesHandoffs(pool)) return handed
  return Effect.flatMap(handed, (entry) => revalidate(pool, restore, waiter, entry))
}

/** Why an acquire got neither a connection nor a place in the queue. @internal */
export const refused = <A>(
  pool: PoolImpl<A>,
  take: Exclude<T.Take<A>, Entry<A> | Waiter<A>>
): Effect.Effect<never, PoolError> => {
  switch (take._tag) {
    case "Closed":
      return Effect.fail(new PoolClosed({ pool: pool.name }))
    case "Breaker":
      return Effect.flatMap(STM.commit(TRef.get(pool.state)), (s) => Effect.fail(breakerError(pool, s)))
    case "Empty":
      pool.counters.emptyFailures++
      return Effect.flatMap(pool.stats, (stats) => Effect.fail(new PoolEmpty({ pool: pool.name, stats })))
    case "Overloaded":
      return overloaded(pool, take)
  }
}

/** Waits with a timer of its own at the waiter's deadline, in the pool's fiber set. */
const awaitBy = <A>(pool: PoolImpl<A>, restore: Restore, waiter: Waiter<A>): Effect.Effect<Entry<A>, PoolError> =>
  Effect.flatMap(
    FiberSet.run(pool.creators, Effect.interruptible(expireAt(pool, waiter))),
    (timer) => Effect.ensuring(awaitWaiter(pool, restore, waiter), Fiber.interruptFork(timer))
  )

/** Around a wait: the connects it asked for start, and the sweeper wakes if the queue was empty. @internal */
export const waitFor = <A, X, E>(
  pool: PoolImpl<A>,
  waiter: Waiter<A>,
  wait: Effect.Effect<X, E>
): Effect.Effect<X, E> => {
  const started = waiter.spawn === 0
    ? wait
    : Effect.zipRight(spawn(pool, waiter.spawn, waiter.queued ? undefined : waiter), wait)
  return waiter.wake ? Effect.zipRight(STM.commit(TQueue.offer(pool.wake, true)), started) : started
}

/**
 * An acquisition that waits or opens a connection is traced, as a child of the caller's span. Without a parent
 * span there is no trace to join, so none is made (OpenTelemetry's instrumentations call this
 * `requireParentSpan`): a span costs as much as the rest of a contended borrow. One served at once from idle is
 * not traced either; the wait-time histogram counts every acquisition.
 */
const span = <A, X, E>(pool: PoolImpl<A>, acquire: Effect.Effect<X, E>): Effect.Effect<X, E> =>
  // `useSpan`, not `withSpan`: nothing inside needs the span as its parent, and installing one costs 3×
  Effect.useSpan("ConnectionPool.acquire", pool.spanOptions, () => acquire)

/**
 * An idle connection can go out as is: not expired, checked recently enough, and not vetoed by the driver.
 *
 * @internal
 */
export const servable = <A>(pool: PoolImpl<A>, entry: Entry<A>, now: number): boolean =>
  now < entry.expiresAt &&
  (pool.driver.validate === undefined || now - entry.checkedAt < pool.options.validationBypass) &&
  (pool.driver.reusable === undefined || pool.driver.reusable(entry.conn))

/** Counts a borrow. `start` is when the caller began to wait (or validate); `undefined` when it did not. @internal */
export const borrowed = <A>(pool: PoolImpl<A>, entry: Entry<A>, now: number, start: number | undefined): Entry<A> => {
  const c = pool.counters
  const waitedMs = start === undefined ? 0 : pool.preciseMs() - start
  c.acquired++
  if (entry.uses === 0) c.misses++
  else c.hits++
  c.waitTotalMs += waitedMs
  if (waitedMs > c.waitMaxMs) c.waitMaxMs = waitedMs
  pool.metrics.waitTime.unsafeUpdate(waitedMs / 1000, noTags)
  entry.uses++
  entry.borrowedAt = now
  return entry
}

/** Takes back the counts of a borrow whose caller was interrupted as it was handed the connection. @internal */
export const unborrowed = <A>(pool: PoolImpl<A>, entry: Entry<A>): void => {
  const c = pool.counters
  c.acquired--
  entry.uses--
  if (entry.uses === 0) c.misses--
  else c.hits--
}

/**
 * Suspends until a transaction completes the waiter. An interruption cancels it: handled after `restore` rather
 * than as the async's canceler, because an interruption already pending when the caller turns interruptible
 * fails `restore` at once, before any canceler is registered, and the waiter must still leave the queue.
 */
const awaitWaiter = <A>(pool: PoolImpl<A>, restore: Restore, waiter: Waiter<A>): Effect.Effect<Entry<A>, PoolError> =>
  Effect.catchAllCause(
    restore(suspend<Entry<A>, PoolError>((resume) => {
      if (waiter.result !== undefined) return resume(waiter.result)
      waiter.resume = resume
    })),
    (cause) =>
      Cause.isInterrupted(cause)
        ? Effect.zipRight(cancel(pool, waiter), Effect.failCause(cause))
        : Effect.failCause(cause)
  )

/** A waiter gives up. If a transaction took it first, the connection it is being handed goes back. */
const cancel = <A>(pool: PoolImpl<A>, waiter: Waiter<A>): Effect.Effect<void> =>
  Effect.flatMap(
    STM.commit(dequeueTx(pool, waiter)),
    (cancelled) =>
      cancelled ? Effect.void : Effect.flatMap(
        Effect.exit(waiter.outcome),
        (exit) => {
          if (Exit.isFailure(exit)) return Effect.void
          unborrowed(pool, exit.value) // handed over, but its caller was gone: not an acquisition after all
          return checkIn(pool, exit.value)
        }
      )
  )

/**
 * Takes a waiter that is still waiting out of the queue (true), or tells that a transaction took it (false).
 *
 * @internal
 */
export const dequeueTx = <A>(pool: PoolImpl<A>, waiter: Waiter<A>): STM.STM<boolean> =>
  modify(pool, (s) => T.dequeue(s, waiter))

/**
 * Called when the borrower is done (from a finalizer or a continuation, so it runs its checks right away), with
 * the cause if its use failed. `then` runs after (passed in rather than chained: one step fewer for every release).
 *
 * @internal
 */
export const release = <A, X = void, E = never>(
  pool: PoolImpl<A>,
  entry: Entry<A>,
  failure: Cause.Cause<unknown> | undefined,
  then: Effect.Effect<X, E> = Effect.void as Effect.Effect<any>
): Effect.Effect<X, E> => {
  if (entry.closed) return then // closed by force at the shutdown deadline
  return checkIn(pool, entry, returned(pool, entry, failure), then)
}

/**
 * `release` with its transaction committed now rather than when the returned effect runs: for a borrower's
 * continuation or finalizer, which runs at the moment of the release anyway (one step fewer per borrow).
 *
 * @internal
 */
export const releaseNow = <A, X = void, E = never>(
  pool: PoolImpl<A>,
  entry: Entry<A>,
  failure: Cause.Cause<unknown> | undefined,
  then: Effect.Effect<X, E>
): Effect.Effect<X, E> => {
  if (entry.closed) return then // closed by force at the shutdown deadline
  const now = returned(pool, entry, failure)
  return handOn(pool, entry, checkInNow(pool, entry, now), now, then)
}

/**
 * What every release does before its transaction: the use time is recorded, and a connection whose user was
 * interrupted or died mid-use (its state unknown), or that the driver vetoes, is marked for closing. Returns now.
 *
 * @internal
 */
export const returned = <A>(pool: PoolImpl<A>, entry: Entry<A>, failure: Cause.Cause<unknown> | undefined): number => {
  const now = pool.now()
  pool.metrics.useTime.unsafeUpdate((now - entry.borrowedAt) / 1000, noTags)
  recordUse(pool, now - entry.borrowedAt)
  if (failure !== undefined && (Cause.isInterrupted(failure) || Cause.isDie(failure))) {
    entry.invalid = true
  } else if (pool.driver.reusable !== undefined && !pool.driver.reusable(entry.conn)) {
    entry.invalid = true
  }
  entry.idleSince = now
  entry.checkedAt = now
  return now
}

/**
 * The release transaction: a connection the pool counts comes back, to the oldest waiter, else idle, or is closed
 * (see `transitions.place`). `then` runs after.
 *
 * @internal
 */
export const checkIn = <A, X = void, E = never>(
  pool: PoolImpl<A>,
  entry: Entry<A>,
  now = pool.now(),
  then: Effect.Effect<X, E> = Effect.void as Effect.Effect<any>
): Effect.Effect<X, E> => {
  return Effect.suspend(() => handOn(pool, entry, checkInNow(pool, entry, now), now, then))
}

/**
 * The release transaction itself (see `checkIn`), committed at once: the pool's prebuilt transition
 * (`makeCheckInTransition`), given the connection through the pool's scratch fields, set and cleared around the
 * synchronous commit. @internal
 */
export const checkInNow = <A>(pool: PoolImpl<A>, entry: Entry<A>, now: number): T.Placed<A> => {
  pool.checkingIn = entry
  pool.checkingInExpired = now >= entry.expiresAt
  const placed = pool.commit(pool.checkInTransition)
  pool.checkingIn = undefined
  return placed
}

/** The release transition, built once per pool: a closure per release cost more than the transition. @internal */
export const makeCheckInTransition = <A>(pool: PoolImpl<A>): (s: State<A>) => readonly [T.Placed<A>, State<A>] =>
  publishing(pool, (s) => T.place(s, pool.checkingIn!, pool.checkingInExpired, undefined, pool.options.reuse))

/**
 * A new connection arrives, its slot reserved in `pending`: to `target` (the `tryGet` it was opened for) or the
 * oldest waiter, else idle. Its success clears the connect failure streak and closes the breaker.
 *
 * @internal
 */
export const arrive = <A>(pool: PoolImpl<A>, entry: Entry<A>, target: Waiter<A> | undefined): Effect.Effect<void> => {
  const now = pool.now()
  const expired = now >= entry.expiresAt
  const tx = modify(pool, (s) => T.place(T.connected(s), entry, expired, target, pool.options.reuse))
  return Effect.flatMap(STM.commit(tx), (placed) => handOn(pool, entry, placed, now, Effect.void))
}

/** Acts on where a connection was placed: a waiter gets it (or its job starts on it), or it is closed. */
const handOn = <A, X, E>(
  pool: PoolImpl<A>,
  entry: Entry<A>,
  placed: T.Placed<A>,
  now: number,
  then: Effect.Effect<X, E>
): Effect.Effect<X, E> => {
  if (placed instanceof Waiter) return give(pool, entry, placed, now) ? then : checkIn(pool, entry, now, then)
  if (placed._tag === "Idle") return then
  return closePlaced(pool, entry, placed, then)
}

/**
 * Hands `entry` to the waiter a transaction took for it: the waiter's fiber is resumed with it, or its job starts
 * on it right here. False when the connection must go back in: the job's caller left before it could start, or
 * the job was done inside its `start` (a synchronous driver; given back here, so that a run of them is a loop).
 *
 * @internal
 */
export const give = <A>(pool: PoolImpl<A>, entry: Entry<A>, waiter: Waiter<A>, now: number): boolean => {
  const job = waiter.job
  if (job === undefined) {
    waiter.complete(Exit.succeed(borrowed(pool, entry, now, waiter.start)))
    return true
  }
  if (job.abandoned) return false
  borrowed(pool, entry, now, waiter.start)
  job.run(entry)
  if (job.released !== DONE_IN_START) return true
  // done inside its start (a synchronous driver): its caller is resumed with the exit, the connection comes back
  job.released = RELEASED_IN_DONE
  const exit = job.outcome as Exit.Exit<unknown, unknown>
  if (entry.closed) return true
  returned(pool, entry, Exit.isFailure(exit) ? exit.cause : undefined)
  return false
}

/**
 * A transaction decided to close `entry`: the connects it asked for start, a `tryGet` it orphaned and the waiters
 * it stranded are failed, and the connection is closed; then `then`.
 *
 * @internal
 */
export const closePlaced = <A, X, E>(
  pool: PoolImpl<A>,
  entry: Entry<A>,
  placed: T.Closing<A>,
  then: Effect.Effect<X, E>
): Effect.Effect<X, E> => {
  const started = spawn(pool, placed.spawn, undefined)
  const destroy = Effect.zipRight(
    placed.orphan === undefined ? started : Effect.zipRight(orphaned(pool, placed.orphan), started),
    destroyed(pool, entry)
  )
  if (placed.stranded.length === 0) return Effect.zipRight(destroy, then)
  return Effect.zipRight(failStranded(pool, placed.stranded), Effect.zipRight(destroy, then))
}

/**
 * A `tryGet` whose connection opened after the pool shut (`PoolClosed`) or shrank below it (`PoolEmpty`, as if it
 * had found the pool full): it never waits, so it is told at once.
 */
const orphaned = <A>(pool: PoolImpl<A>, waiter: Waiter<A>): Effect.Effect<void> =>
  Effect.map(stats(pool), (s) => {
    const error = s.closed ? new PoolClosed({ pool: pool.name }) : new PoolEmpty({ pool: pool.name, stats: s })
    waiter.complete(Exit.fail(error))
  })

/** Takes a connection out of the pool for good. @internal */
export const retire = <A>(pool: PoolImpl<A>, entry: Entry<A>): Effect.Effect<void> => {
  entry.invalid = true
  return checkIn(pool, entry)
}

