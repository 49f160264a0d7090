import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Random from "effect/Random"
import * as STM from "effect/STM"
import * as TQueue from "effect/TQueue"
import { createInBackground, destroyed, signalRefill, spawn } from "./connections.js"
import { countTimeout, phaseOf, timedOut } from "./deadline.js"
import { validate } from "./checkout.js"
import { checkIn, retire } from "./handoff.js"
import { backoffDelay } from "./options.js"
import type { PoolImpl } from "./pool.js"
import { type Entry, idleList, idlePatch, longestIdleFirst, patched, type State } from "./state.js"
import { modify } from "./stats.js"
import * as T from "./transitions.js"

// The pool's background fibers, forked in its scope by `lifecycle.start`. Each sleeps on a wake-up queue or a
// timer, never on the state, so that it does not re-run on every state change.

/** Fails waiters whose `acquireTimeout` passed. The queue is in arrival order, so its head expires first. @internal */
export const sweeper = <A>(pool: PoolImpl<A>): Effect.Effect<never> => {
  const head = modify(pool, T.liveHead)
  const step = Effect.flatMap(STM.commit(head), (head) => {
    if (head === undefined) return STM.commit(TQueue.take(pool.wake))
    const now = pool.now()
    if (head.deadline > now) return Effect.sleep(head.deadline - now)
    const expire = modify(pool, (s) => T.takeExpired(s, now))
    return Effect.uninterruptible(Effect.flatMap(STM.commit(expire), (expired) =>
      Effect.map(pool.stats, (stats) => {
        for (const waiter of expired) {
          countTimeout(pool)
          waiter.complete(Exit.fail(timedOut(pool, waiter, now, phaseOf(waiter, stats), stats)))
        }
      })))
  })
  return Effect.forever(step)
}

const housekeepingInterval = <A>(pool: PoolImpl<A>): number => {
  const o = pool.options
  return Math.max(1, Math.min(30_000, o.idleTimeout / 2, o.maxLifetime / 2, o.keepaliveInterval / 2))
}

/**
 * Closes connections idle past `idleTimeout` (keeping `minSize`) or past their lifetime; probes keepalives.
 *
 * @internal
 */
export const housekeeper = <A>(pool: PoolImpl<A>): Effect.Effect<never> => {
  const pass = Effect.suspend(() => {
    const now = pool.now()
    const o = pool.options
    const tx = modify(pool, (s): readonly [readonly [Array<Entry<A>>, Array<Entry<A>>], State<A>] => {
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
        Effect.forEach(close, (e) => destroyed(pool, e), { discard: true }),
        Effect.forEach(probe, (e) =>
          Effect.flatMap(validate(pool, e), (ok) => {
            if (!ok) return retire(pool, e)
            e.checkedAt = pool.now()
            return checkIn(pool, e)
          }), { discard: true })
      ))
  })
  return Effect.forever(Effect.zipRight(Effect.suspend(() => Effect.sleep(housekeepingInterval(pool))), pass))
}

/** Keeps `minSize` connections open, one connect at a time, backing off while connects fail. @internal */
export const maintainer = <A>(pool: PoolImpl<A>): Effect.Effect<never> => {
  const reserve = modify(pool, (s): readonly [boolean, State<A>] =>
    // while the breaker is open its probe connects, and refills when one gets through
    !s.closed && s.breaker === undefined && s.total + s.pending < s.minSize
      ? [true, patched(s, { pending: s.pending + 1 })]
      : [false, s]
  )
  const fill = (failures: number): Effect.Effect<void> =>
    Effect.flatMap(STM.commit(reserve), (reserved) => {
      if (!reserved) return Effect.void
      return Effect.flatMap(createInBackground(pool, "background"), (ok) => {
        if (ok) return fill(0)
        return Effect.flatMap(Random.next, (r) =>
          Effect.zipRight(Effect.sleep(backoffDelay(pool.options, failures + 1, r)), fill(failures + 1)))
      })
    })
  return Effect.forever(Effect.zipRight(STM.commit(TQueue.take(pool.refill)), fill(0)))
}

/**
 * While the breaker is open: one probe connect at a time, off the request path, each at its scheduled time. The
 * first that succeeds closes the breaker (in `handoff.arrive`) and its connection serves the next caller.
 *
 * @internal
 */
export const prober = <A>(pool: PoolImpl<A>): Effect.Effect<never> => {
  const reserve = modify(pool, (s): readonly [number | undefined, State<A>] => {
    if (s.closed || s.breaker === undefined) return [undefined, s]
    const wait = Math.ceil(s.breaker.nextProbeAt - pool.now()) // whole millis: the clock may round a sleep down
    if (wait > 0) return [wait, s]
    if (s.total + s.pending >= s.maxSize) return [pool.options.breakerBackoff, s] // full: nothing to probe with
    return [0, patched(s, { pending: s.pending + 1 })]
  })
  const loop: Effect.Effect<void> = Effect.flatMap(STM.commit(reserve), (wait) => {
    if (wait === undefined) return Effect.void
    if (wait > 0) return Effect.zipRight(Effect.sleep(wait), loop)
    const probe = Effect.flatMap(createInBackground(pool, "probe"), (ok) =>
      ok
        ? Effect.zipRight(Effect.logDebug("circuit breaker closed: a probe connected"), signalRefill(pool))
        : Effect.void)
    return Effect.zipRight(probe, loop)
  })
  return Effect.forever(Effect.zipRight(STM.commit(TQueue.take(pool.probe)), loop))
}

/**
 * While the server has no room for more of our connections (`ceiling` below `maxSize`): after a jittered
 * backoff, and only if callers are waiting for a connection, lets one more connect try. It raises the ceiling by
 * one; a connect that fails at capacity again lowers it and lengthens the backoff.
 *
 * @internal
 */
export const grower = <A>(pool: PoolImpl<A>): Effect.Effect<never> => {
  const raise = modify(pool, (s): readonly [readonly [boolean, number], State<A>] => {
    if (s.closed || s.ceiling >= s.maxSize) return [[false, 0], patched(s, { ceiling: Infinity })]
    if (s.waiting <= s.pending) return [[true, 0], s] // nobody would use the room: look again later
    const [n, next] = T.withSpawn(patched(s, { ceiling: s.ceiling + 1 }))
    return [[true, n], next]
  })
  const loop: Effect.Effect<void> = Effect.flatMap(
    Random.next,
    (r) =>
      Effect.zipRight(
        Effect.sleep(backoffDelay(pool.options, Math.max(1, pool.capacityStreak), r)),
        Effect.flatMap(STM.commit(raise), ([again, n]) =>
          again ? Effect.zipRight(spawn(pool, n, undefined), loop) : Effect.void)
      )
  )
  return Effect.forever(Effect.zipRight(STM.commit(TQueue.take(pool.growth)), loop))
}
