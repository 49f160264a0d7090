import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { PoolOverloaded } from "../PoolError.js"
import type { PoolImpl } from "./pool.js"
import type { State } from "./state.js"
import { noTags } from "./stats.js"
import { spawnCount } from "./transitions.js"

// Overload shedding (`maxWaiting`, `shedOnExpectedWait`). Decided inside the acquire transaction, on the one branch
// that would queue the caller, so the check and the enqueue are atomic and the borrow served from idle pays
// nothing. The expected wait comes from a moving mean of how long connections are held, updated on release.

/** Weight of the newest use in the moving mean: it reflects roughly the last twenty releases. */
const alpha = 0.1

/** Folds one use (borrow to release, in milliseconds) into the pool's moving mean. @internal */
export const recordUse = <A>(pool: PoolImpl<A>, ms: number): void => {
  const c = pool.counters
  c.useTimeRecentMs = c.useTimeRecentMs === 0 ? ms : c.useTimeRecentMs + alpha * (ms - c.useTimeRecentMs)
}

/** Why a caller is refused: the acquire transaction's result when it sheds. @internal */
export class Overloaded {
  readonly _tag = "Overloaded"
  constructor(
    readonly reason: "maxWaiting" | "expectedWait",
    readonly waiting: number,
    readonly expectedMs: number
  ) {}
}

/**
 * Whether a caller about to be queued is shed instead: only one that no connect is coming for (no room to open
 * one, or the breaker is open), when `maxWaiting` callers already wait, or (under `shedOnExpectedWait`) when the
 * callers ahead of it, served by the open connections at the recent mean use time, would outlast its
 * `acquireTimeout`. A pool still growing toward `maxSize` is never shed: a connect is started for the caller.
 *
 * @internal
 */
export const shed = <A>(pool: PoolImpl<A>, s: State<A>): Overloaded | undefined => {
  const o = pool.options
  if (s.waiting < o.maxWaiting && !o.shedOnExpectedWait) return undefined
  if (s.pending > s.waiting || spawnCount(s, s.waiting + 1) > 0) return undefined
  if (s.waiting >= o.maxWaiting) return new Overloaded("maxWaiting", s.waiting, 0)
  const mean = pool.counters.useTimeRecentMs
  if (mean === 0 || s.total === 0) return undefined // nothing measured yet, or nothing open to release
  const expectedMs = ((s.waiting + 1 - s.pending) * mean) / s.total
  return expectedMs > o.acquireTimeout ? new Overloaded("expectedWait", s.waiting, expectedMs) : undefined
}

/** The shed caller's failure, counted, with a stats snapshot. @internal */
export const overloaded = <A>(pool: PoolImpl<A>, take: Overloaded): Effect.Effect<never, PoolOverloaded> => {
  pool.counters.overloadFailures++
  pool.metrics.overloaded.unsafeUpdate(1, noTags)
  return Effect.flatMap(pool.stats, (stats) =>
    Effect.fail(
      new PoolOverloaded({
        pool: pool.name,
        reason: take.reason,
        waiting: take.waiting,
        maxWaiting: pool.options.maxWaiting,
        ...(take.reason === "expectedWait"
          ? {
            expectedWait: Duration.millis(take.expectedMs),
            timeout: Duration.millis(pool.options.acquireTimeout)
          }
          : {}),
        stats
      })
    ))
}
