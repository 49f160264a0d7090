import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as STM from "effect/STM"
import { PoolClosed, type PoolError } from "../PoolError.js"
import { destroyed } from "./connections.js"
import { type Budget, budgetOf, failTimedOut, OUT_OF_TIME, validateWithin } from "./deadline.js"
import {
  borrowed,
  checkIn,
  committedTraced,
  refused,
  type Restore,
  retire,
  servable,
  unborrowed,
  waitAs
} from "./handoff.js"
import type { PoolImpl } from "./pool.js"
import { Entry, limitOf, patched, type State } from "./state.js"
import { modify } from "./stats.js"
import * as T from "./transitions.js"
import { Waiter } from "./waiter.js"

// Checking a connection before it is lent: on checkout from idle once past `validationBypass`, and on every handoff
// under `validationBypass: 0`. A broken one is closed and the caller tries again within its deadline.

/**
 * An idle connection goes out unless it expired, the driver knows it is broken, or it sat idle past the bypass
 * window and fails validation; then it is closed and the acquire tries again (`reacquire`) within its deadline.
 * A validation still running at the deadline is cut short, its connection closed (its state is unknown).
 *
 * @internal
 */
export const checkout = <A>(
  pool: PoolImpl<A>,
  restore: Restore,
  neverWait: boolean,
  entry: Entry<A>,
  budget: Budget
): Effect.Effect<Entry<A>, PoolError> => {
  const now = pool.now()
  if (now >= entry.expiresAt || (pool.driver.reusable !== undefined && !pool.driver.reusable(entry.conn))) {
    return Effect.zipRight(retire(pool, entry), reacquire(pool, restore, neverWait, budget))
  }
  if (pool.driver.validate === undefined) return Effect.succeed(borrowed(pool, entry, now, budget.start))
  if (now >= budget.deadline) return Effect.zipRight(checkIn(pool, entry), failTimedOut(pool, budget, "validating"))
  return Effect.flatMap(Effect.exit(restore(validateWithin(pool, entry, budget))), (exit) => {
    if (Exit.isFailure(exit)) return Effect.zipRight(retire(pool, entry), Effect.failCause(exit.cause)) // interrupted
    if (exit.value === OUT_OF_TIME) {
      return Effect.zipRight(retire(pool, entry), failTimedOut(pool, budget, "validating"))
    }
    if (!exit.value) return Effect.zipRight(retire(pool, entry), reacquire(pool, restore, neverWait, budget))
    entry.checkedAt = pool.now()
    return Effect.succeed(borrowed(pool, entry, entry.checkedAt, budget.start))
  })
}

/**
 * `validationBypass: 0` means every borrow is validated, a connection handed straight to a waiter included (it
 * was checked when released, zero time ago, which no bypass window of zero covers).
 *
 * @internal
 */
export const validatesHandoffs = <A>(pool: PoolImpl<A>): boolean =>
  pool.options.validationBypass === 0 && pool.driver.validate !== undefined

/**
 * Validates a connection a giver handed this caller (and already counted as its borrow), within the caller's
 * deadline. A broken one is closed and the caller waits again at the head of the queue; either way the giver's
 * count is taken back.
 *
 * @internal
 */
export const revalidate = <A>(
  pool: PoolImpl<A>,
  restore: Restore,
  waited: Waiter<A>,
  entry: Entry<A>
): Effect.Effect<Entry<A>, PoolError> => {
  if (entry.uses <= 1) return Effect.succeed(entry) // opened for this caller: the connect just proved it
  const budget = budgetOf(waited)
  if (pool.now() >= budget.deadline) {
    unborrowed(pool, entry)
    return Effect.zipRight(checkIn(pool, entry), failTimedOut(pool, budget, "validating"))
  }
  return Effect.flatMap(Effect.exit(restore(validateWithin(pool, entry, budget))), (exit) => {
    if (Exit.isSuccess(exit) && exit.value === true) {
      entry.checkedAt = pool.now()
      return Effect.succeed(entry)
    }
    unborrowed(pool, entry)
    if (Exit.isFailure(exit)) return Effect.zipRight(retire(pool, entry), Effect.failCause(exit.cause)) // interrupted
    if (exit.value === OUT_OF_TIME) {
      return Effect.zipRight(retire(pool, entry), failTimedOut(pool, budget, "validating"))
    }
    // broken: closed, and the caller keeps its place at the head of the queue and its deadline
    entry.invalid = true
    budget.queuedAt = pool.now()
    const again = new Waiter<A>(waited.since, waited.start, waited.deadline, true, false)
    again.budget = budget
    const tx = modify(pool, (s): readonly [Waiter<A> | undefined, State<A>] =>
      s.closed ? [undefined, patched(s, { total: s.total - 1 })] : T.requeueFirst(s, again))
    return Effect.flatMap(STM.commit(tx), (queued) => {
      const closing = destroyed(pool, entry)
      if (queued === undefined) return Effect.zipRight(closing, Effect.fail(new PoolClosed({ pool: pool.name })))
      return Effect.zipRight(closing, waitAs(pool, restore, queued))
    })
  })
}

/**
 * The driver's check, bounded by `validationTimeout`; a failure or a timeout says the connection is broken.
 *
 * @internal
 */
export const validate = <A>(pool: PoolImpl<A>, entry: Entry<A>): Effect.Effect<boolean> =>
  pool.driver.validate!(entry.conn).pipe(
    Effect.timeoutTo({ duration: pool.options.validationTimeout, onSuccess: (ok) => ok, onTimeout: () => false }),
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : Effect.as(Effect.logDebug(cause), false)
    ),
    Effect.tap((ok) => {
      if (ok) return Effect.void
      pool.counters.validationFailures++
      return Effect.logDebug("connection failed validation; closing it")
    })
  )

/**
 * An acquire tried again after a connection it was about to get turned out broken, within the same deadline: an
 * idle connection, else the head of the queue (it is older than every waiter there: it found an idle connection,
 * so none was waiting then).
 */
const reacquire = <A>(
  pool: PoolImpl<A>,
  restore: Restore,
  neverWait: boolean,
  budget: Budget
): Effect.Effect<Entry<A>, PoolError> =>
  Effect.suspend(() => {
    budget.queuedAt = pool.now()
    const take = (s: State<A>): readonly [T.Take<A>, State<A>] => {
      if (s.closed) return [T.closedTake, s]
      if (s.idleCount > 0) return T.takeIdle(s)
      const waiter = new Waiter<A>(budget.since, budget.start, budget.deadline, !neverWait, neverWait)
      waiter.budget = budget
      if (neverWait) {
        if (s.breaker !== undefined) return [T.breakerTake, s]
        if (s.total + s.pending >= limitOf(s)) return [T.emptyTake, s]
        return T.reserveFor(s, waiter, pool.traced)
      }
      if (s.breaker !== undefined && s.total === 0) return [T.breakerTake, s]
      return T.queueFirst(s, waiter, pool.traced)
    }
    return Effect.flatMap(committedTraced(pool, take), (take): Effect.Effect<Entry<A>, PoolError> => {
      if (take instanceof Entry) {
        const now = pool.now()
        if (servable(pool, take, now)) return Effect.succeed(borrowed(pool, take, now, budget.start))
        return checkout(pool, restore, neverWait, take, budget)
      }
      if (take instanceof Waiter) return waitAs(pool, restore, take)
      return refused(pool, take)
    })
  })
