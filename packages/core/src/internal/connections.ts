import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Random from "effect/Random"
import * as STM from "effect/STM"
import * as TQueue from "effect/TQueue"
import * as TRef from "effect/TRef"
import { ConnectionError, PoolClosed, type PoolError, PoolTimeout } from "../PoolError.js"
import type { PoolStats } from "../PoolStats.js"
import { spentBy } from "./deadline.js"
import { arrive } from "./handoff.js"
import { backoffDelay } from "./options.js"
import type { PoolImpl } from "./pool.js"
import { Entry, type State } from "./state.js"
import { modify, noTags } from "./stats.js"
import * as T from "./transitions.js"
import type { Waiter } from "./waiter.js"

// Opening and closing connections: connects with timeout and retries, run in the pool's fiber set so that no
// caller's interruption abandons one; what a failed connect does to the breaker and the ceiling; closing exactly
// once.

const connectOnce = <A>(pool: PoolImpl<A>): Effect.Effect<A, ConnectionError | PoolTimeout> =>
  pool.driver.connect.pipe(
    Effect.timeout(pool.options.connectTimeout),
    Effect.catchTag("TimeoutException", () =>
      Effect.flatMap(
        pool.stats,
        (stats) => Effect.fail(connectTimedOut(pool, stats))
      ))
  )

/** One connect, retried `retries` times with jittered exponential backoff on `ConnectionError`. */
const connect = <A>(pool: PoolImpl<A>, retries: number): Effect.Effect<A, ConnectionError | PoolTimeout> => {
  const attempt = (n: number): Effect.Effect<A, ConnectionError | PoolTimeout> =>
    Effect.catchAll(connectOnce(pool), (error) => {
      if (error._tag !== "ConnectionError") return Effect.fail(error)
      // `cause` is not an own enumerable field of an Error: carried over by name
      if (n > retries) {
        return Effect.fail(new ConnectionError({ ...error, cause: error.cause, attempts: n, pool: pool.name }))
      }
      pool.counters.connectFailures++
      return Effect.flatMap(
        Random.next,
        (r) => Effect.zipRight(Effect.sleep(backoffDelay(pool.options, n, r)), attempt(n + 1))
      )
    })
  return attempt(1)
}

/** Starts `n` connects in the pool's fiber set, so that no caller's interruption abandons one. @internal */
export const spawn = <A>(pool: PoolImpl<A>, n: number, target: Waiter<A> | undefined): Effect.Effect<void> => {
  if (n === 0) return Effect.void
  const run = Effect.interruptible(create(pool, target, "waiter"))
  return n === 1
    ? Effect.asVoid(FiberSet.run(pool.creators, run))
    : Effect.repeatN(FiberSet.run(pool.creators, run), n - 1)
}

/**
 * A background connect (warm-up, refill, the breaker's probe) run in the pool's set of connects, so that a
 * shutdown interrupts it at once rather than waiting up to `connectTimeout` for it; the caller waits for its end.
 *
 * @internal
 */
export const createInBackground = <A>(pool: PoolImpl<A>, kind: "background" | "probe"): Effect.Effect<boolean> =>
  Effect.flatMap(FiberSet.run(pool.creators, Effect.interruptible(create(pool, undefined, kind))), Fiber.join)

/**
 * Opens one connection for a slot already reserved in `pending` and hands it on (`handoff.arrive`). A failure goes
 * to `target` (tryGet) or the oldest waiter; a background connect (warm-up, refill) fails alone. Interruption
 * (shutdown) still gives the slot back.
 *
 * @internal
 */
export const create = <A>(pool: PoolImpl<A>, target: Waiter<A> | undefined, kind: T.Kind): Effect.Effect<boolean> =>
  Effect.uninterruptibleMask((restore) => {
    const start = pool.clock.unsafeCurrentTimeNanos()
    const seq = ++pool.connects
    const retries = kind === "waiter" ? pool.options.connectRetries : 0
    return Effect.flatMap(
      Effect.zip(Effect.exit(restore(connect(pool, retries))), Random.next),
      ([exit, random]) => {
        if (Exit.isFailure(exit)) {
          return Effect.as(connectFailed(pool, exit.cause, target, kind, random, seq, start), false)
        }
        pool.capacityStreak = 0
        if (seq > pool.lastSuccess) pool.lastSuccess = seq
        const now = pool.now()
        const lifetime = pool.options.maxLifetime * (1 - pool.options.maxLifetimeJitter * random)
        const entry = new Entry(exit.value, now, now + lifetime)
        pool.entries.set(exit.value, entry)
        pool.counters.created++
        pool.metrics.createTime.unsafeUpdate(Number(pool.clock.unsafeCurrentTimeNanos() - start) / 1e9, noTags)
        return Effect.as(Effect.zipRight(Effect.logDebug("connection opened"), arrive(pool, entry, target)), true)
      }
    )
  }).pipe(Effect.annotateLogs("pool", pool.name))

/**
 * A connect failed (see `transitions.connectFailure`). A server at capacity wakes the grower to probe for room
 * later; the failure that opens the breaker starts the prober and fails the waiters left with nothing to wait for;
 * a probe's failure only reschedules the next probe.
 */
const connectFailed = <A>(
  pool: PoolImpl<A>,
  cause: Cause.Cause<ConnectionError | PoolTimeout>,
  target: Waiter<A> | undefined,
  kind: T.Kind,
  random: number,
  seq: number,
  start: bigint
): Effect.Effect<void> => {
  const interrupted = Cause.isInterruptedOnly(cause)
  if (!interrupted) pool.counters.connectFailures++
  const failure = Cause.failureOption(cause)
  const error: PoolError = interrupted
    ? new PoolClosed({ pool: pool.name })
    : failure._tag === "Some"
    ? failure.value
    : new ConnectionError({ reason: "the driver's connect died", cause: Cause.squash(cause), pool: pool.name })
  const now = pool.now()
  // a connect that began before the latest one that succeeded says nothing about the server now
  const stale = seq <= pool.lastSuccess
  const tx = modify(
    pool,
    (s) => T.connectFailure(s, error, interrupted || stale, target, kind, now, random, pool.options)
  )
  return Effect.flatMap(STM.commit(tx), ({ failed, full, opened, recipient, spawn: n }) => {
    const log = interrupted ? Effect.void : Effect.logDebug("connect failed", error)
    if (recipient !== undefined) {
      const connectMs = Number(pool.clock.unsafeCurrentTimeNanos() - start) / 1e6
      recipient.complete(Exit.fail(error._tag === "PoolTimeout" ? spentBy(error, recipient, now, connectMs) : error))
    }
    return Effect.zipRight(log, Effect.suspend(() => {
      if (full) {
        pool.capacityStreak++
        return Effect.zipRight(STM.commit(TQueue.offer(pool.growth, true)), spawn(pool, n, undefined))
      }
      if (!opened) return spawn(pool, n, undefined)
      return Effect.all([
        Effect.logDebug("circuit breaker opened: connects keep failing", error),
        failStranded(pool, failed),
        STM.commit(TQueue.offer(pool.probe, true)),
        spawn(pool, n, undefined)
      ], { discard: true })
    }))
  })
}

/** Fails waiters that the open breaker leaves with nothing to wait for. @internal */
export const failStranded = <A>(pool: PoolImpl<A>, waiters: ReadonlyArray<Waiter<A>>): Effect.Effect<void> => {
  if (waiters.length === 0) return Effect.void
  return Effect.map(STM.commit(TRef.get(pool.state)), (s) => {
    const error = breakerError(pool, s)
    for (const waiter of waiters) waiter.complete(Exit.fail(error))
  })
}

/** What a caller that the open breaker turns away gets: the last connect's error, saying so. @internal */
export const breakerError = <A>(pool: PoolImpl<A>, s: State<A>): ConnectionError => {
  const b = s.breaker
  if (b === undefined) return new ConnectionError({ reason: "the circuit breaker closed meanwhile", pool: pool.name })
  return new ConnectionError({
    ...b.last,
    cause: b.last.cause,
    pool: pool.name,
    breaker: {
      openedAt: b.openedAt,
      failures: s.failures,
      nextProbeInMs: Math.max(0, Math.ceil(b.nextProbeAt - pool.now()))
    }
  })
}

/** One connect ran past `connectTimeout`. @internal */
export const connectTimedOut = <A>(pool: PoolImpl<A>, stats: PoolStats): PoolTimeout =>
  new PoolTimeout({
    pool: pool.name,
    phase: "connecting",
    limit: "connectTimeout",
    timeout: Duration.millis(pool.options.connectTimeout),
    waited: Duration.millis(pool.options.connectTimeout),
    waitingMs: 0,
    connectingMs: pool.options.connectTimeout,
    validatingMs: 0,
    stats
  })

/** Closes a connection already taken out of the pool's count, then lets the refill fiber replace it. @internal */
export const destroyed = <A>(pool: PoolImpl<A>, entry: Entry<A>): Effect.Effect<void> =>
  Effect.zipRight(close(pool, entry), signalRefill(pool))

/** Closes one connection, exactly once. @internal */
export const close = <A>(pool: PoolImpl<A>, entry: Entry<A>): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (entry.closed) return Effect.void
    entry.closed = true
    pool.entries.delete(entry.conn)
    pool.counters.destroyed++
    return pool.driver.close(entry.conn).pipe(
      Effect.catchAllCause((cause) => Effect.logDebug("closing a connection failed", cause)),
      Effect.zipRight(Effect.logDebug("connection closed")),
      Effect.annotateLogs("pool", pool.name)
    )
  })

/** Wakes the refill fiber (`background.maintainer`), when there is a `minSize` to keep. @internal */
export const signalRefill = <A>(pool: PoolImpl<A>): Effect.Effect<void> =>
  Effect.suspend(() => pool.options.minSize === 0 ? Effect.void : STM.commit(TQueue.offer(pool.refill, true)))
