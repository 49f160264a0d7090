import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as STM from "effect/STM"
import type { PoolError } from "../PoolError.js"
import { acquire, dequeueTx, release, type Restore, waitFor } from "./handoff.js"
import type { PoolImpl } from "./pool.js"
import { Job, type Start, type Waiter } from "./waiter.js"

// `withConnectionCallback`: like `withConnection`, but the operation is a callback, started on the connection by
// whoever hands it over (see `handoff.handOn`), so that a caller who waits is woken once, with the operation's
// result, rather than once for the connection and once more for the operation.

/** @internal */
export const callback = <A, X, E>(pool: PoolImpl<A>, start: Start<A>): Effect.Effect<X, E | PoolError> =>
  Effect.uninterruptibleMask((restore) => {
    const job = new Job(start, pool.clock)
    const waited = acquire(pool, restore, false, (entry) => {
      job.run(entry)
      return awaitJob(pool, restore, job, undefined)
    }, (waiter) => waitForJob(pool, restore, job, waiter))
    return Effect.flatMap(Effect.exit(waited), (exit): Effect.Effect<X, E | PoolError> => {
      // the operation's own exit; or a pool failure, or an interruption, before or while it ran
      const result = (Exit.isSuccess(exit) ? exit.value : exit) as Exit.Exit<X, E | PoolError>
      const entry = job.entry
      // never started: nothing to give back (a giver that took it for a caller since interrupted gives it back)
      if (entry === undefined) return result
      return release(pool, entry, Exit.isFailure(result) ? result.cause : undefined, result)
    })
  })

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
