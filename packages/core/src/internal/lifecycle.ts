import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import type * as Scope from "effect/Scope"
import * as STM from "effect/STM"
import * as TRef from "effect/TRef"
import type * as ConnectionPool from "../ConnectionPool.js"
import { type InvalidConfig, PoolClosed } from "../PoolError.js"
import { grower, housekeeper, maintainer, prober, sweeper } from "./background.js"
import { close, destroyed, signalRefill } from "./connections.js"
import * as leak from "./leak.js"
import type { PoolImpl } from "./pool.js"
import { reconfigure } from "./reconfigure.js"
import { type Entry, idleList, idlePatch, patched, type State } from "./state.js"
import { modify } from "./stats.js"
import * as T from "./transitions.js"
import type { Waiter } from "./waiter.js"

// A pool's life: started in a scope with its background fibers, resized, drained and pruned while it runs, and
// shut down (waiters failed, idle connections closed, those in use awaited up to a deadline) when the scope closes.

/**
 * Starts a new pool in the current scope. Finalizers run last-in first-out: the background fibers stop, then the
 * pool shuts down, then its fiber set.
 *
 * @internal
 */
export const start = <A>(pool: PoolImpl<A>): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    yield* Effect.addFinalizer(() => shutdown(pool))
    yield* Effect.forkScoped(Effect.interruptible(sweeper(pool)))
    yield* Effect.forkScoped(Effect.interruptible(housekeeper(pool)))
    yield* Effect.forkScoped(Effect.interruptible(maintainer(pool)))
    yield* Effect.forkScoped(Effect.interruptible(prober(pool)))
    yield* Effect.forkScoped(Effect.interruptible(grower(pool)))
    if (leak.enabled(pool)) yield* Effect.forkScoped(Effect.interruptible(leak.watcher(pool)))
    yield* signalRefill(pool)
  })

/** @internal */
export const invalidate = <A>(pool: PoolImpl<A>, conn: A): Effect.Effect<void> =>
  Effect.suspend(() => {
    const entry = pool.entries.get(conn)
    if (entry === undefined) return Effect.void
    entry.invalid = true
    const tx = modify(pool, (s): readonly [boolean, State<A>] => {
      const idle = idleList(s).filter((e) => e !== entry)
      if (idle.length === s.idleCount) return [false, s] // in use: closed when released
      return [true, patched(s, { ...idlePatch(idle), total: s.total - 1 })]
    })
    return Effect.flatMap(STM.commit(tx), (wasIdle) => wasIdle ? destroyed(pool, entry) : Effect.void)
  })

/** @internal */
export const drain = <A>(pool: PoolImpl<A>): Effect.Effect<void> => {
  const tx = modify(pool, (s): readonly [Array<Entry<A>>, State<A>] =>
    s.idleCount === 0 ? [[], s] : [idleList(s), patched(s, { ...idlePatch([]), total: s.total - s.idleCount })]
  )
  return Effect.flatMap(STM.commit(tx), (idle) => Effect.forEach(idle, (e) => destroyed(pool, e), { discard: true }))
}

/** The sizes alone, through `reconfigure` (which checks the whole config and resizes in one transaction). @internal */
export const resize = <A>(pool: PoolImpl<A>, sizes: ConnectionPool.Sizes): Effect.Effect<void, InvalidConfig> =>
  reconfigure(pool, { minSize: sizes.minSize, maxSize: sizes.maxSize })

/** @internal */
export const shutdown = <A>(pool: PoolImpl<A>, timeout?: Duration.DurationInput): Effect.Effect<void> => {
  const tx = modify(pool, (s): readonly [readonly [Array<Entry<A>>, Array<Waiter<A>>] | undefined, State<A>] => {
    if (s.closed) return [undefined, s]
    const [waiters, rest] = T.takeAll(s)
    return [[idleList(s), waiters], patched(rest, { closed: true, ...idlePatch([]), total: s.total - s.idleCount })]
  })
  // the one transaction that retries: it only reads the state
  const settled = STM.commit(
    STM.flatMap(TRef.get(pool.state), (s) => STM.check(() => s.total === 0 && s.pending === 0))
  )
  return Effect.uninterruptible(Effect.flatMap(STM.commit(tx), (first) => {
    if (first === undefined) return Deferred.await(pool.shutdownDone)
    const [idle, waiters] = first
    const deadline = timeout === undefined ? pool.options.shutdownTimeout : Duration.toMillis(timeout)
    const closed = new PoolClosed({ pool: pool.name })
    return Effect.all([
      Effect.logDebug("shutting down"),
      Effect.sync(() => waiters.forEach((w) => w.complete(Exit.fail(closed)))),
      Effect.forEach(idle, (e) => close(pool, e), { discard: true }),
      FiberSet.clear(pool.creators),
      Effect.interruptible(settled).pipe(
        Effect.timeoutTo({ duration: deadline, onSuccess: () => true, onTimeout: () => false }),
        Effect.flatMap((settled) => settled ? Effect.void : closeInUse(pool))
      ),
      Effect.logDebug("shut down"),
      Deferred.succeed(pool.shutdownDone, undefined)
    ], { discard: true }).pipe(Effect.annotateLogs("pool", pool.name))
  }))
}

/** At the shutdown deadline: connections still in use are closed under their users. */
const closeInUse = <A>(pool: PoolImpl<A>): Effect.Effect<void> =>
  Effect.suspend(() => {
    const open = Array.from(pool.entries.values()).filter((e) => !e.closed)
    return Effect.zipRight(
      STM.commit(modify(pool, (s) => [undefined, patched(s, { total: s.total - open.length })])),
      Effect.forEach(open, (e) => close(pool, e), { discard: true })
    )
  })
