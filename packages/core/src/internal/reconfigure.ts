import * as Config from "effect/Config"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as STM from "effect/STM"
import * as Stream from "effect/Stream"
import * as TRef from "effect/TRef"
import type * as ConnectionPool from "../ConnectionPool.js"
import { InvalidConfig } from "../PoolError.js"
import { close, signalRefill, spawn } from "./connections.js"
import { resolve, type Resolved } from "./options.js"
import type { PoolImpl } from "./pool.js"
import { allOf, type Entry, idleList, idlePatch, longestIdleFirst, patched, type State } from "./state.js"
import { modify, publishLimits } from "./stats.js"
import * as T from "./transitions.js"
import { WAITING } from "./waiter.js"

// Live reconfiguration: a new config is checked whole, as `make` checks one, then applied without dropping a
// connection in use. Sizes go through one transaction (what `resize` does); times are read from `pool.options` at
// each use, so the rest is to make a shortened limit bite at once: waiters' deadlines and connections' lifetimes
// are pulled in, and the sweeper and housekeeper, asleep on the old times, are woken. A lengthened limit applies to
// what comes next: callers arriving, connections opened.

/** @internal */
export const reconfigure = <A>(
  pool: PoolImpl<A>,
  changes: ConnectionPool.Reconfiguration
): Effect.Effect<void, InvalidConfig> =>
  Effect.suspend(() => {
    const unknown = Object.keys(changes).find((key) => !(key in pool.options))
    if (unknown !== undefined) {
      const value = (changes as Record<string, unknown>)[unknown]
      const reason = unknown === "driver" ? "cannot change while the pool runs" : "is not a pool option"
      return Effect.fail(new InvalidConfig({ option: unknown, value: unknown === "driver" ? "<driver>" : value, reason }))
    }
    return pool.reconfiguring.withPermits(1)(
      Effect.suspend(() => replace(pool, { ...pool.config, ...defined(changes) }, false))
    )
  })

/** The pool options among `options` (a driver's own, like a URL or a password, are not kept). @internal */
export const poolConfigOf = (options: object, resolved: Resolved): ConnectionPool.PoolConfig => {
  const config: Record<string, unknown> = {}
  for (const key of Object.keys(resolved)) if (key in options) config[key] = (options as Record<string, unknown>)[key]
  return config
}

/**
 * Makes `config` the pool's whole config (as `layerConfig`'s reload re-reads it): options it leaves out go back to
 * their defaults. The name cannot change: the pool's metrics, spans and logs are keyed by it.
 *
 * @internal
 */
export const replace = <A>(
  pool: PoolImpl<A>,
  config: ConnectionPool.PoolConfig,
  lock = true
): Effect.Effect<void, InvalidConfig> =>
  Effect.suspend(() => {
    const name = config.name ?? "default"
    if (name !== pool.name) {
      return Effect.fail(new InvalidConfig({ option: "name", value: config.name, reason: cannotRename(pool) }))
    }
    const applied = Effect.flatMap(resolve(config), (next) => {
      const fixed = fixedAtStart.find((key) => next[key] !== pool.options[key])
      return fixed === undefined
        ? apply(pool, poolConfigOf(config, next), next)
        : Effect.fail(new InvalidConfig({ option: fixed, value: config[fixed], reason: fixedReason }))
    })
    // one at a time, so that each merges into the config the one before it left
    return lock ? pool.reconfiguring.withPermits(1)(applied) : applied
  })

/**
 * Options that choose, when the pool starts, which borrow path it takes (`nested.ts`) and whether the leak
 * watcher runs (`leak.ts`): they cannot change while it runs.
 */
const fixedAtStart = ["nested", "leakDetectionThreshold"] as const

const fixedReason = "cannot change while the pool runs (it chose its borrow path and leak watcher at start)"

const cannotRename = <A>(pool: PoolImpl<A>) =>
  `cannot change while the pool runs (it is "${pool.name}": its metrics, spans and logs carry the name)`

/** Fields set to `undefined` keep their current value, as a field left out does. */
const defined = (changes: ConnectionPool.Reconfiguration): ConnectionPool.PoolConfig => {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(changes)) if (value !== undefined) out[key] = value
  return out
}

const apply = <A>(pool: PoolImpl<A>, config: ConnectionPool.PoolConfig, next: Resolved): Effect.Effect<void> =>
  Effect.uninterruptible(Effect.suspend(() => {
    const prev = pool.options
    pool.config = config
    const changed = (Object.keys(next) as Array<keyof Resolved>).filter((k) => next[k] !== prev[k])
    if (changed.length === 0) return Effect.void
    pool.options = next
    publishLimits(pool)
    return Effect.all([
      Effect.logDebug(`pool reconfigured: ${changed.map((k) => `${k} ${show(prev[k])} → ${show(next[k])}`).join(", ")}`),
      resizeTo(pool, next.minSize, next.maxSize),
      next.acquireTimeout < prev.acquireTimeout ? shortenDeadlines(pool, next.acquireTimeout) : Effect.void,
      next.maxLifetime < prev.maxLifetime ? shortenLifetimes(pool, next) : Effect.void,
      Effect.sync(() => retime(pool))
    ], { discard: true }).pipe(Effect.annotateLogs("pool", pool.name))
  }))

const show = (value: unknown) => typeof value === "string" ? JSON.stringify(value) : String(value)

/**
 * The sizes in one transaction: idle connections above a smaller `maxSize` close now (the longest idle first),
 * those in use when released; connects start for waiters a larger `maxSize` leaves room for.
 *
 * @internal
 */
export const resizeTo = <A>(pool: PoolImpl<A>, minSize: number, maxSize: number): Effect.Effect<void> => {
  const tx = modify(pool, (s): readonly [readonly [Array<Entry<A>>, number], State<A>] => {
    if (s.minSize === minSize && s.maxSize === maxSize) return [[[], 0], s]
    const idle = idleList(s)
    const excess = Math.max(0, Math.min(idle.length, s.total - maxSize))
    const close = longestIdleFirst(idle).slice(0, excess)
    const [spawn, next] = T.withSpawn(patched(s, {
      minSize,
      maxSize,
      ...(excess === 0 ? {} : idlePatch(idle.filter((e) => !close.includes(e)))),
      total: s.total - excess
    }))
    return [[close, spawn], next]
  })
  return Effect.flatMap(STM.commit(tx), ([closing, n]) =>
    Effect.all([
      Effect.forEach(closing, (e) => close(pool, e), { discard: true }),
      spawn(pool, n, undefined),
      signalRefill(pool)
    ], { discard: true }))
}

/**
 * A shorter `acquireTimeout` holds for callers already waiting too: each waits at most that long from its arrival.
 * The queue stays in deadline order (arrival order, one timeout for all), which the sweeper relies on.
 */
const shortenDeadlines = <A>(pool: PoolImpl<A>, timeout: number): Effect.Effect<void> =>
  Effect.map(STM.commit(TRef.get(pool.state)), (s) => {
    for (const w of allOf(s.waiters)) {
      if (w.status === WAITING && w.since + timeout < w.deadline) w.deadline = w.since + timeout
    }
  })

/** A shorter `maxLifetime` holds for open connections too, jittered as new ones are; in use, they close on release. */
const shortenLifetimes = <A>(pool: PoolImpl<A>, next: Resolved): Effect.Effect<void> =>
  Effect.forEach(pool.entries.values(), (entry) =>
    Effect.map(Random.next, (r) => {
      const expiresAt = entry.createdAt + next.maxLifetime * (1 - next.maxLifetimeJitter * r)
      if (expiresAt < entry.expiresAt) entry.expiresAt = expiresAt
    }), { discard: true })

// ----------------------------------------------------------------------------------------------------- waking

/** Wakes every background fiber asleep on a time computed from the old options. @internal */
export const retime = <A>(pool: PoolImpl<A>): void => {
  const sleeping = pool.retimed
  pool.retimed = Deferred.unsafeMake<void>(FiberId.none)
  Deferred.unsafeDone(sleeping, Effect.void)
}

/** Sleeps `millis`, or until the pool is reconfigured. @internal */
export const sleepOrRetimed = <A>(pool: PoolImpl<A>, millis: number): Effect.Effect<void> =>
  Effect.raceFirst(Effect.sleep(millis), Deferred.await(pool.retimed))

// ----------------------------------------------------------------------------------------------------- reloading

/**
 * `layerConfig`'s reload: on each tick of the schedule (or element of the stream), reads `config` again and makes
 * it the pool's config. A read that fails, or a config the pool rejects, is logged as a warning and changes
 * nothing. The fiber lives in the layer's scope.
 *
 * @internal
 */
export const reloading = <A>(
  pool: PoolImpl<A>,
  config: Config.Config.Wrap<ConnectionPool.PoolConfig>,
  reload: ConnectionPool.Reload
): Effect.Effect<void, never, Scope.Scope> => {
  const once = Effect.matchEffect(Config.unwrap(config), {
    onFailure: (error) => Effect.logWarning(`pool config not reloaded, keeping the current one: ${error}`),
    onSuccess: (c) =>
      Effect.catchAll(
        replace(pool, c),
        (error) => Effect.logWarning(`pool config not reloaded, keeping the current one: ${error.message}`)
      )
  })
  const loop = Schedule.isSchedule(reload)
    ? Effect.schedule(once, reload as Schedule.Schedule<unknown>)
    : Stream.runForEach(reload as Stream.Stream<unknown>, () => once)
  return Effect.asVoid(Effect.forkScoped(Effect.interruptible(loop.pipe(Effect.annotateLogs("pool", pool.name)))))
}
