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
  /** Callers refused by overload shedding. */
  overloadFailures = 0
  /** Moving mean of how long a connection is held, in milliseconds (see `overload.recordUse`); 0 until measured. */
  useTimeRecentMs = 0
  /** Borrows that outlived `leakDetectionThreshold`, ever, and those of them not returned yet. */
  leaksSuspected = 0
  leaked = 0
}

/**
 * Every state change goes through here or `transact`: one `TRef.modify`, and the counts by state, pending
 * requests and the breaker published as deltas from the old state to the new (OpenTelemetry UpDownCounters).
 *
 * @internal
 */
export const modify = <A, B>(pool: PoolImpl<A>, f: (s: State<A>) => readonly [B, State<A>]): STM.STM<B> =>
  TRef.modify(pool.state, (s) => published(pool, s, f(s)))

/**
 * The hot path's form of `modify`: the same transition and metrics, committed at once and synchronously
 * (`PoolImpl.commit`). For a transition that is its own transaction: acquire, release, a waiter leaving.
 *
 * @internal
 */
export const transact = <A, B>(pool: PoolImpl<A>, f: (s: State<A>) => readonly [B, State<A>]): B =>
  pool.commit(publishing(pool, f))

/** A transition that publishes the metrics: built once for a transaction the pool commits over and over. @internal */
export const publishing = <A, B>(
  pool: PoolImpl<A>,
  f: (s: State<A>) => readonly [B, State<A>]
): (s: State<A>) => readonly [B, State<A>] =>
(s) => published(pool, s, f(s))

const published = <A, B>(pool: PoolImpl<A>, s: State<A>, result: readonly [B, State<A>]) => {
  const next = result[1]
  const metrics = pool.metrics
  if (next.idleCount !== s.idleCount || next.total !== s.total) {
    const used = next.total - next.idleCount - (s.total - s.idleCount)
    if (used !== 0) metrics.used.unsafeUpdate(used, noTags)
    if (next.idleCount !== s.idleCount) metrics.idle.unsafeUpdate(next.idleCount - s.idleCount, noTags)
  }
  if (next.waiting !== s.waiting) metrics.pendingRequests.unsafeUpdate(next.waiting - s.waiting, noTags)
  if ((next.breaker === undefined) !== (s.breaker === undefined)) {
    metrics.breakerOpen.unsafeUpdate(next.breaker === undefined ? -1 : 1, noTags)
  }
  if (next.closed && !s.closed) publishLimits(pool, true)
  return result
}

/**
 * Publishes the configured sizes (at creation, after a resize) as deltas from what was published before; a pool
 * that closes takes its sizes back, so that pools of the same name add up and a closed one counts for nothing.
 *
 * @internal
 */
export const publishLimits = <A>(pool: PoolImpl<A>, closing = false): void => {
  const m = pool.metrics
  const was = m.published
  if (was.closed) return
  const minSize = closing ? 0 : pool.options.minSize
  const maxSize = closing ? 0 : pool.options.maxSize
  if (maxSize !== was.maxSize) {
    const delta = maxSize - was.maxSize
    m.max.unsafeUpdate(delta, noTags)
    m.limit.unsafeUpdate(delta, noTags)
    m.idleMax.unsafeUpdate(delta, noTags)
  }
  if (minSize !== was.minSize) m.idleMin.unsafeUpdate(minSize - was.minSize, noTags)
  m.published = { minSize, maxSize, closed: closing }
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
    overloadFailures: c.overloadFailures,
    useTimeRecentMs: c.useTimeRecentMs,
    leaksSuspected: c.leaksSuspected,
    leaked: c.leaked
  }
}

/** @internal */
export const stats = <A>(pool: PoolImpl<A>): Effect.Effect<PoolStats> =>
  Effect.map(STM.commit(TRef.get(pool.state)), (s) => snapshot(pool, s))
