import * as Effect from "effect/Effect"
import * as STM from "effect/STM"
import * as TRef from "effect/TRef"
import type { PoolStats } from "../PoolStats.js"
import type { PoolImpl } from "./pool.js"
import { limitOf, type State } from "./state.js"

/**
 * The metrics carry the pool's name in their keys already; one shared empty array saves an allocation per update.
 *
 * @internal
 */
export const noTags: ReadonlyArray<never> = []

/** Counters that never decide anything: plain numbers, read by `stats`. @internal */
export class Counters {
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
  /** Borrows that outlived `leakDetectionThreshold`, ever, and those of them not returned yet. */
  leaksSuspected = 0
  leaked = 0
}

/** Every state change goes through here: one `TRef.modify`, gauges published from the new state. @internal */
export const modify = <A, B>(pool: PoolImpl<A>, f: (s: State<A>) => readonly [B, State<A>]): STM.STM<B> =>
  TRef.modify(pool.state, (s) => {
    const result = f(s)
    const next = result[1]
    const metrics = pool.metrics
    if (next.idleCount !== s.idleCount || next.total !== s.total) {
      metrics.used.unsafeUpdate(next.total - next.idleCount, noTags)
      metrics.idle.unsafeUpdate(next.idleCount, noTags)
    }
    if (next.waiting !== s.waiting) metrics.pendingRequests.unsafeUpdate(next.waiting, noTags)
    if (next.breaker !== s.breaker) metrics.breakerOpen.unsafeUpdate(next.breaker === undefined ? 0 : 1, noTags)
    return result
  })

/** Publishes the configured sizes, at creation and after a resize. @internal */
export const publishLimits = <A>(pool: PoolImpl<A>): void => {
  pool.metrics.max.unsafeUpdate(pool.options.maxSize, noTags)
  pool.metrics.idleMin.unsafeUpdate(pool.options.minSize, noTags)
}

/** @internal */
export const snapshot = <A>(pool: PoolImpl<A>, s: State<A>): PoolStats => {
  const c = pool.counters
  return {
    name: pool.name,
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
    ceiling: limitOf(s),
    leaksSuspected: c.leaksSuspected,
    leaked: c.leaked
  }
}

/** @internal */
export const stats = <A>(pool: PoolImpl<A>): Effect.Effect<PoolStats> =>
  Effect.map(STM.commit(TRef.get(pool.state)), (s) => snapshot(pool, s))
