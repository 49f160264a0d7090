import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import type { PoolError } from "../PoolError.js"
import { budgetFrom } from "./deadline.js"
import { checkout, validatesHandoffs } from "./checkout.js"
import {
  borrowed,
  checkInNow,
  closePlaced,
  commitTraced,
  give,
  refused,
  release,
  type Restore,
  returned,
  servable,
  waitAs,
  waitFor
} from "./handoff.js"
import * as nested from "./nested.js"
import type { PoolImpl } from "./pool.js"
import { Entry } from "./state.js"
import { interruptibly, maskedStep, pushFrame, restores, suspend } from "./step.js"
import { transact } from "./stats.js"
import * as T from "./transitions.js"
import { CALLER_RELEASES, DONE_IN_START, Job, type Outcome, RELEASED_IN_DONE, type Start, Waiter } from "./waiter.js"

// `withConnectionCallback`: like `withConnection`, but the operation is a callback, started on the connection by
// whoever hands it over (see `handoff.give`), so that a caller who waits is woken once, with the operation's
// result, rather than once for the connection and once more for the operation. And when the operation calls
// `done`, its connection goes back right there (`releaseInDone`), so the next queued operation starts inside the
// driver's callback: pg-pool's trick, with the state still in STM.
//
// This is the pool's most travelled path (a PostgreSQL or SQLite statement, a Redis or HTTP exchange), so it is
// written for the fiber runtime's step count: the nested-borrow check, the acquire transaction and the start of the
// operation run in one step, the caller suspends once, and it is resumed with the operation's exit itself; the
// connection is back in the pool by then. What that costs in care:
// - the step runs under `uninterruptibleMask`: a caller is never interrupted between the transaction that queued
//   it (or lent it a connection) and the moment it can clean that up;
// - an interruption while it waits cancels it in `interrupted`, run uninterruptibly (effect skips handlers in an
//   interruptible fiber that was interrupted): after `restore` on the combinators' path, or from the job itself,
//   pushed on the fiber as the wait's frame, on the contended hot path (`framedWait`);
// - whatever giving the connection back still takes in the caller's fiber (closing it) is the job's `owed`,
//   taken exactly once: by the outcome the caller is resumed with, or by `interrupted` when the interruption
//   reached the fiber first and the resume was dropped.

/** @internal */
export const callback = <A, X, E>(pool: PoolImpl<A>, start: Start<A>): Effect.Effect<X, E | PoolError> =>
  maskedStep<unknown, unknown, never>((restore, fiber) => {
    if (pool.fiberAware) {
      const held = nested.callbackOf(pool, fiber, start, plain)
      if (held !== undefined) return restore(held)
    }
    return borrow(pool, start, restore, fiber)
  }) as Effect.Effect<X, E | PoolError>

/** The path that does not look for what the fiber holds (`nested.callbackOf` wraps it under leak detection). */
const plain = <A>(pool: PoolImpl<A>, start: Start<A>): Outcome =>
  maskedStep<unknown, unknown, never>((restore, fiber) => borrow(pool, start, restore, fiber))

/** The one step: the acquire transaction and what it decided. */
const borrow = <A>(
  pool: PoolImpl<A>,
  start: Start<A>,
  restore: Restore,
  fiber: Fiber.RuntimeFiber<any, any>
): Outcome => {
  const take = commitTraced(pool, fiber, pool.takeTransition)
  if (take instanceof Entry) {
    const now = pool.now()
    const job = new Job(start, pool.clock, pool.releaseInDone, pool.waitFailed)
    if (servable(pool, take, now)) return runOn(pool, restore, job, borrowed(pool, take, now, undefined), fiber) // hot path
    return Effect.flatMap(
      checkout(pool, restore, false, take, budgetFrom(pool, now)),
      (entry) => runOn(pool, restore, job, entry, undefined)
    )
  }
  if (take instanceof Waiter) {
    const job = new Job(start, pool.clock, pool.releaseInDone, pool.waitFailed)
    // each handoff checked first (`validationBypass: 0`): the plain wait, then the job starts on what it got
    if (validatesHandoffs(pool)) {
      return Effect.flatMap(waitAs(pool, restore, take), (entry) => runOn(pool, restore, job, entry, undefined))
    }
    // attached in the step that queued it: whoever takes the waiter from now on starts the job
    take.job = job
    job.waiter = take
    // the contended hot path: nothing to start or trace around the wait, which is framed right here
    if (take.spawn === 0 && !take.wake && !take.traced && pushFrame(fiber, job)) return framedWait(job, restore, fiber)
    const wait = waitFor(pool, take, awaitJob(restore, job))
    return take.traced ? traced(pool, job, wait) : wait
  }
  return refused(pool, take)
}

/**
 * Starts the job on a connection its caller got. Done at once (a synchronous driver): the connection goes back in
 * this same step and the outcome is the operation's exit, with no suspension. `fiber` when this is the borrow's
 * step, whose wait can be framed.
 */
const runOn = <A>(
  pool: PoolImpl<A>,
  restore: Restore,
  job: Job<A>,
  entry: Entry<A>,
  fiber: Fiber.RuntimeFiber<any, any> | undefined
): Outcome => {
  job.run(entry)
  if (job.released === DONE_IN_START) {
    job.released = RELEASED_IN_DONE
    return giveBack(pool, job, entry, job.outcome as Exit.Exit<unknown, unknown>)
  }
  if (job.outcome !== undefined) return job.outcome
  return fiber !== undefined && pushFrame(fiber, job) ? framedWait(job, restore, fiber) : awaitJob(restore, job)
}

/** A traced wait: a `ConnectionPool.acquire` span until the job starts (or its caller stops waiting). */
const traced = <A>(pool: PoolImpl<A>, job: Job<A>, wait: Outcome): Outcome =>
  Effect.flatMap(Effect.makeSpan("ConnectionPool.acquire", pool.spanOptions), (span) => {
    job.span = span
    // handed over, or failed, while the span was being made
    if (job.entry !== undefined) job.endSpan(Exit.void)
    else if (job.outcome !== undefined) job.endSpan(Exit.isExit(job.outcome) ? job.outcome : Exit.void)
    return wait
  })

/**
 * A job's `done` (`Job.onDone`): its connection goes back from inside the driver's callback, and the outcome its
 * caller continues with is the operation's exit. The release transaction commits synchronously
 * (`PoolImpl.commit`; through the runtime the pool captured in its own scope when it commits through STM), and a
 * waiter it hands the connection to is resumed, or its job started, before `done` returns. Closing a connection
 * takes effects: that is owed by the caller's fiber. Not released here while the operation's `start` is still
 * running (a `done` called from inside it would recurse through every queued job) nor once its caller was
 * interrupted (the caller closes the connection, whose state is unknown).
 *
 * @internal
 */
export const releaseInDone = <A>(pool: PoolImpl<A>, job: Job<A>, exit: Exit.Exit<unknown, unknown>): Outcome => {
  if (job.released === CALLER_RELEASES) return exit // its caller was interrupted, and gives the connection back
  if (job.starting) {
    job.released = DONE_IN_START // given back by whoever started it, once `start` returns (`runOn`, `handoff.give`)
    return exit
  }
  job.released = RELEASED_IN_DONE
  return giveBack(pool, job, job.entry!, exit)
}

/**
 * Gives a job's connection back, synchronously: to the oldest waiter (its job started on it, or its fiber
 * resumed), else idle; or it is to close, which the job's caller owes. A waiter whose job was done inside its
 * `start` hands the connection straight back here (`handoff.give`), so a run of synchronous jobs is a loop, not a
 * recursion.
 */
const giveBack = <A>(pool: PoolImpl<A>, job: Job<A>, entry: Entry<A>, exit: Exit.Exit<unknown, unknown>): Outcome => {
  if (entry.closed) return exit // closed by force at the shutdown deadline
  const now = returned(pool, entry, Exit.isFailure(exit) ? exit.cause : undefined)
  for (;;) {
    const placed = checkInNow(pool, entry, now)
    if (placed instanceof Waiter) {
      if (give(pool, entry, placed, now)) return exit
      continue // its caller left before the job started, or its job is done already: back in
    }
    if (placed._tag === "Idle") return exit
    return owing(job, closePlaced(pool, entry, placed, Effect.void), exit)
  }
}

/** The caller owes `work` before it can return `exit` (see `Job.owed`). */
const owing = <A>(job: Job<A>, work: Effect.Effect<void>, exit: Exit.Exit<unknown, unknown>): Outcome => {
  job.owed = work
  return Effect.uninterruptible(Effect.suspend(() => {
    const owed = takeOwed(job)
    return owed === undefined ? exit : Effect.zipRight(owed, exit)
  }))
}

const takeOwed = <A>(job: Job<A>): Effect.Effect<void> | undefined => {
  const owed = job.owed
  job.owed = undefined
  return owed
}

/**
 * Suspends until the job's outcome (see `Outcome`); the job's handler (`waitFailed`) runs after `restore`, where a
 * handler still runs for an interrupted fiber (an interruption pending when the caller turns interruptible fails
 * `restore` at once, before any canceler is registered).
 */
const awaitJob = <A>(restore: Restore, job: Job<A>): Outcome =>
  Effect.catchAllCause(
    restore(suspend<unknown, unknown>((resume) => {
      if (job.outcome !== undefined) return resume(job.outcome)
      job.resume = resume
    })),
    (cause) => job.onFailure(job, cause)
  )

/**
 * `awaitJob` in one primitive, the job already on the fiber's stack as the wait's handler (`step.pushFrame`): the
 * wait turns interruptible in its `register`, where `restore` would have made it so.
 */
const framedWait = <A>(job: Job<A>, restore: Restore, fiber: Fiber.RuntimeFiber<any, any>): Outcome => {
  const interruptible = restores(restore)
  return suspend<unknown, unknown>((resume) => {
    if (job.outcome !== undefined) return resume(job.outcome)
    job.resume = resume
    if (interruptible) interruptibly(fiber, resume)
  })
}

/**
 * A job's caller stopped waiting with a failure: interrupted (see `interrupted`), or its operation failed.
 *
 * @internal
 */
export const waitFailed = <A>(pool: PoolImpl<A>, job: Job<A>, cause: Cause.Cause<unknown>): Outcome =>
  Cause.isInterrupted(cause) ? interrupted(pool, job, job.waiter, cause) : stopped(job, cause)

/** A failure other than an interruption: whatever the outcome owed is done first (it normally already was). */
const stopped = <A>(job: Job<A>, cause: Cause.Cause<unknown>): Outcome => {
  const owed = takeOwed(job)
  return owed === undefined ? Effect.failCause(cause) : Effect.zipRight(owed, Effect.failCause(cause))
}

/**
 * A job's caller is interrupted. Still queued: it leaves the queue. Taken by a giver that has not started it yet:
 * marked abandoned, so the giver takes the connection back. Running: its own canceler runs, and the caller gives
 * the connection back as interrupted, which closes it. Done: whatever its outcome owed, if the interruption
 * reached the fiber before the outcome could run.
 */
const interrupted = <A>(
  pool: PoolImpl<A>,
  job: Job<A>,
  waiter: Waiter<A> | undefined,
  cause: Cause.Cause<unknown>
): Outcome => {
  if (waiter !== undefined && transact(pool, (s) => T.dequeue(s, waiter))) {
    job.endSpan(Exit.interrupt(FiberId.none))
    return Effect.failCause(cause)
  }
  const entry = job.entry
  if (entry === undefined) {
    job.abandoned = true
    job.endSpan(Exit.interrupt(FiberId.none))
    return Effect.failCause(cause)
  }
  if (job.finished) return stopped(job, cause)
  // from here the caller gives the connection back, as interrupted: a `done` that comes later must not
  job.released = CALLER_RELEASES
  const back = release(pool, entry, cause, Effect.failCause(cause))
  return job.canceler === undefined ? back : Effect.zipRight(job.canceler, back)
}
