import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as STM from "effect/STM"
import { PoolTimeout } from "../PoolError.js"
import type { PoolStats } from "../PoolStats.js"
import { validate } from "./checkout.js"
import type { PoolImpl } from "./pool.js"
import type { Entry } from "./state.js"
import { modify, noTags, stats } from "./stats.js"
import * as T from "./transitions.js"
import type { Waiter } from "./waiter.js"

// One deadline for the whole acquire: `acquireTimeout` from when the caller asked, through waiting in the queue,
// a connect opened for it and validating the connection it gets, across the retries a broken connection causes.
// The sweeper (`background.sweeper`) expires queued waiters at their deadline; what it cannot see (a `tryGet`'s
// own connect, a caller put back at the head of the queue) gets a timer of its own here, and a validation is cut
// short at the deadline. A connect outlives a caller who left: it runs in the pool's fiber set and its connection
// goes to the next waiter, else idle (`transitions.place`).

/**
 * What an acquire that did not get a connection at once has spent so far; made off the hot path only (an idle
 * connection that needs validating, a requeue, a timeout).
 *
 * @internal
 */
export class Budget {
  validatingMs = 0
  /** When the caller last joined the queue (or began waiting for its own connect). */
  queuedAt: number
  constructor(readonly since: number, readonly start: number, readonly deadline: number) {
    this.queuedAt = since
  }
}

/** A new acquire's budget, its deadline `acquireTimeout` from now. @internal */
export const budgetFrom = <A>(pool: PoolImpl<A>, now: number): Budget =>
  new Budget(now, pool.preciseMs(), now + pool.options.acquireTimeout)

/** A waiter's budget, made on first need. @internal */
export const budgetOf = <A>(waiter: Waiter<A>): Budget =>
  waiter.budget ?? (waiter.budget = new Budget(waiter.since, waiter.start, waiter.deadline))

/** @internal */
export type Phase = PoolTimeout["phase"]

/** What a waiter whose deadline passed was waiting for: its own connect (tryGet), one it asked for, or a release. */
export const phaseOf = <A>(waiter: Waiter<A>, stats: PoolStats): Phase =>
  !waiter.queued || (waiter.spawned && stats.pending > 0) ? "connecting" : "waiting"

/**
 * The `PoolTimeout` of an acquire whose deadline passed in `phase`, the time it took split between the phases.
 *
 * @internal
 */
export const timedOut = <A>(
  pool: PoolImpl<A>,
  acquire: { readonly since: number; readonly budget?: Budget | undefined },
  now: number,
  phase: Phase,
  stats: PoolStats
): PoolTimeout => {
  const budget = acquire instanceof Budget ? acquire : acquire.budget
  const elapsed = Math.max(0, now - acquire.since)
  const validatingMs = Math.min(elapsed, budget?.validatingMs ?? 0)
  const queuedAt = budget?.queuedAt ?? acquire.since
  const connectingMs = phase === "connecting" ? Math.max(0, Math.min(elapsed - validatingMs, now - queuedAt)) : 0
  return new PoolTimeout({
    pool: pool.name,
    phase,
    limit: "acquireTimeout",
    timeout: Duration.millis(pool.options.acquireTimeout),
    waited: Duration.millis(elapsed),
    waitingMs: elapsed - validatingMs - connectingMs,
    connectingMs,
    validatingMs,
    stats
  })
}

/**
 * A connect's `connectTimeout` as the waiter it fails sees it: the time that waiter's acquire took, of which the
 * connect's own.
 *
 * @internal
 */
export const spentBy = <A>(error: PoolTimeout, waiter: Waiter<A>, now: number, connectMs: number): PoolTimeout => {
  const elapsed = Math.max(0, now - waiter.since)
  const validatingMs = Math.min(elapsed, waiter.budget?.validatingMs ?? 0)
  const connectingMs = Math.min(elapsed - validatingMs, connectMs)
  return new PoolTimeout({
    ...error,
    waited: Duration.millis(elapsed),
    waitingMs: elapsed - validatingMs - connectingMs,
    connectingMs,
    validatingMs
  })
}

/** Counts an acquisition that ran out of time. @internal */
export const countTimeout = <A>(pool: PoolImpl<A>): void => {
  pool.counters.timeouts++
  pool.metrics.timeouts.unsafeUpdate(1, noTags)
}

/** The caller ran out of time: counted, and failed with what it spent. @internal */
export const failTimedOut = <A>(
  pool: PoolImpl<A>,
  acquire: Budget,
  phase: Phase
): Effect.Effect<never, PoolTimeout> =>
  Effect.flatMap(stats(pool), (s) => {
    countTimeout(pool)
    return Effect.fail(timedOut(pool, acquire, pool.now(), phase, s))
  })

/**
 * At a waiter's deadline, fails it with `PoolTimeout` if it still waits; for waiters the sweeper does not watch.
 * Run in the pool's fiber set (so a shutdown stops it), and interrupted once its caller is done.
 *
 * @internal
 */
export const expireAt = <A>(pool: PoolImpl<A>, waiter: Waiter<A>): Effect.Effect<boolean> =>
  Effect.zipRight(
    Effect.suspend(() => Effect.sleep(Math.max(0, waiter.deadline - pool.now()))),
    Effect.uninterruptible(Effect.flatMap(STM.commit(modify(pool, (s) => T.dequeue(s, waiter))), (expired) => {
      if (!expired) return Effect.succeed(false) // handed a connection, or failed, meanwhile
      return Effect.map(stats(pool), (s) => {
        countTimeout(pool)
        waiter.complete(Exit.fail(timedOut(pool, waiter, pool.now(), phaseOf(waiter, s), s)))
        return false
      })
    }))
  )

/** What `validateWithin` answers when the acquire's deadline came first. @internal */
export const OUT_OF_TIME = "out of time" as const

/**
 * The driver's check of a connection about to be lent, bounded by `validationTimeout` and by what is left of the
 * acquire's deadline, whichever is shorter; the time it takes is added to the budget.
 *
 * @internal
 */
export const validateWithin = <A>(
  pool: PoolImpl<A>,
  entry: Entry<A>,
  budget: Budget
): Effect.Effect<boolean | typeof OUT_OF_TIME> =>
  Effect.suspend(() => {
    const started = pool.now()
    const remaining = budget.deadline - started
    if (remaining <= 0) return Effect.succeed(OUT_OF_TIME)
    const check = remaining > pool.options.validationTimeout
      ? validate(pool, entry)
      : Effect.timeoutTo(validate(pool, entry), {
        duration: remaining,
        onSuccess: (ok): boolean | typeof OUT_OF_TIME => ok,
        onTimeout: () => OUT_OF_TIME
      })
    return Effect.ensuring(check, Effect.sync(() => void (budget.validatingMs += pool.now() - started)))
  })
