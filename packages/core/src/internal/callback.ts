import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as STM from "effect/STM"
import type { PoolError } from "../PoolError.js"
import { acquire, checkInNow, closePlaced, dequeueTx, give, release, type Restore, returned, waitFor } from "./handoff.js"
import type { PoolImpl } from "./pool.js"
import { CALLER_RELEASES, Job, RELEASED_IN_DONE, type Start, UNRELEASED, Waiter } from "./waiter.js"

// `withConnectionCallback`: like `withConnection`, but the operation is a callback, started on the connection by
// whoever hands it over (see `handoff.give`), so that a caller who waits is woken once, with the operation's
// result, rather than once for the connection and once more for the operation. And when the operation calls
// `done`, its connection goes back right there (`releaseInDone`), so the next queued operation starts inside the
// driver's callback: pg-pool's trick, with the state still in STM.

/** @internal */
export const callback = <A, X, E>(pool: PoolImpl<A>, start: Start<A>): Effect.Effect<X, E | PoolError> =>
  Effect.uninterruptibleMask((restore) => {
    const job = new Job(start, pool.clock, pool.releaseInDone)
    const waited = acquire(pool, restore, false, (entry) => {
      job.run(entry)
      // done already (a synchronous driver): its result as is, without suspending the fiber for it
      return job.result !== undefined ? job.result : awaitJob(pool, restore, job, undefined)
    }, (waiter) => waitForJob(pool, restore, job, waiter))
    return Effect.flatMap(Effect.exit(waited), (exit): Effect.Effect<X, E | PoolError> => {
      // the operation's own exit; or a pool failure, or an interruption, before or while it ran
      const result = (Exit.isSuccess(exit) ? exit.value : exit) as Exit.Exit<X, E | PoolError>
      const entry = job.entry
      // never started: nothing to give back (a giver that took it for a caller since interrupted gives it back)
      if (entry === undefined) return result
      if (job.released === RELEASED_IN_DONE) {
        const closing = job.closing
        return closing === undefined ? result : closePlaced(pool, entry, closing, result)
      }
      job.released = CALLER_RELEASES
      return release(pool, entry, Exit.isFailure(result) ? result.cause : undefined, result)
    })
  })

/**
 * A job's `done`: its connection goes back from inside the driver's callback. The release transaction commits
 * synchronously (`PoolImpl.commit`; through the runtime the pool captured in its own scope when it commits through
 * STM), and a waiter it
 * hands the connection to is resumed, or its job started, before `done` returns. Closing a connection takes
 * effects: that part is left to the caller's fiber (`job.closing`). Not used while the operation's `start` is
 * still running (a `done` called from inside it would recurse through every queued job) nor once its caller was
 * interrupted (it closes the connection, whose state is unknown): the caller releases then, as before.
 *
 * @internal
 */
export const releaseInDone = <A>(pool: PoolImpl<A>, job: Job<A>, exit: Exit.Exit<unknown, unknown>): void => {
  const entry = job.entry!
  job.released = RELEASED_IN_DONE
  if (entry.closed) return // closed by force at the shutdown deadline
  const now = returned(pool, entry, Exit.isFailure(exit) ? exit.cause : undefined)
  for (;;) {
    const placed = checkInNow(pool, entry, now)
    if (placed instanceof Waiter) {
      if (give(pool, entry, placed, now)) return
      continue // its caller left before the job started: back in, to the next waiter or idle
    }
    if (placed._tag !== "Idle") job.closing = placed
    return
  }
}

/** A job's caller waits: whoever hands it a connection will start the job. */
const waitForJob = <A>(
  pool: PoolImpl<A>,
  restore: Restore,
  job: Job<A>,
  waiter: Waiter<A>
): Effect.Effect<Exit.Exit<unknown, unknown>, PoolError> => {
  waiter.job = job
  // a giver that took the waiter before the job was attached (this fiber may yield between the transaction and
  // this step) completed it as a plain waiter: start the job here, or pass on its failure
  const early = waiter.result
  if (early !== undefined) {
    if (Exit.isSuccess(early)) job.run(early.value)
    else job.settle(early as Exit.Exit<never, PoolError>)
  }
  const wait = waitFor(pool, waiter, awaitJob(pool, restore, job, waiter))
  if (!waiter.traced) return wait
  return Effect.flatMap(Effect.makeSpan("ConnectionPool.acquire", pool.spanOptions), (span) => {
    job.span = span
    // handed over, or failed, while the span was being made
    if (job.entry !== undefined) job.endSpan(Exit.void)
    else if (job.result !== undefined) job.endSpan(job.result)
    return wait
  })
}

/**
 * Suspends until the job's caller gets a pool failure or its operation's exit; an interruption cancels either
 * (after `restore`, as in `handoff.awaitWaiter`).
 */
const awaitJob = <A>(
  pool: PoolImpl<A>,
  restore: Restore,
  job: Job<A>,
  waiter: Waiter<A> | undefined
): Effect.Effect<Exit.Exit<unknown, unknown>, PoolError> =>
  Effect.catchAllCause(
    restore(Effect.async<Exit.Exit<unknown, unknown>, PoolError>((resume) => {
      if (job.result !== undefined) return resume(job.result)
      job.resume = resume
    })),
    (cause) =>
      Cause.isInterrupted(cause)
        ? Effect.zipRight(cancelJob(pool, job, waiter), Effect.failCause(cause))
        : Effect.failCause(cause)
  )

/**
 * A job's caller is interrupted. Still queued: it leaves the queue. Taken by a giver that has not started it yet:
 * marked abandoned, so the giver takes the connection back. Running: its own canceler runs; the caller then
 * releases the connection as interrupted, which closes it.
 */
const cancelJob = <A>(pool: PoolImpl<A>, job: Job<A>, waiter: Waiter<A> | undefined): Effect.Effect<void> => {
  const running = Effect.suspend(() => {
    // from here the caller gives the connection back, as interrupted: a `done` that comes later must not
    if (job.released === UNRELEASED) job.released = CALLER_RELEASES
    if (job.entry === undefined) {
      job.abandoned = true
      job.endSpan(Exit.interrupt(FiberId.none))
      return Effect.void
    }
    return job.finished || job.canceler === undefined ? Effect.void : job.canceler
  })
  if (waiter === undefined) return running
  return Effect.flatMap(STM.commit(dequeueTx(pool, waiter)), (dequeued) => {
    if (!dequeued) return running
    job.endSpan(Exit.interrupt(FiberId.none))
    return Effect.void
  })
}
