import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
import { NestedAcquire, type PoolError } from "../PoolError.js"
import { callback as plainCallback } from "./callback.js"
import { acquire, release } from "./handoff.js"
import * as leak from "./leak.js"
import { applied, type PoolImpl } from "./pool.js"
import type { Entry } from "./state.js"
import type { Start } from "./waiter.js"

// The borrow paths that know their fiber, taken instead of the plain ones in `pool.ts` unless `nested: "allow"`
// and leak detection is off. A fiber's borrow is noted in the pool's `holds`, keyed by the fiber itself: state
// local to the fiber, as a `FiberRef` would be, but whose first write on a fiber does not copy the fiber's
// whole `FiberRefs` map (effect 3's are immutable), which cost a fifth of a borrow for a fiber per request. A
// nested borrow (the fiber asks again while it holds one) reuses the fiber's connection (`"reuse"`) or fails at
// once (`"fail"`) instead of waiting for a second one, which deadlocks the pool when `maxSize` fibers all do it.
//
// Only the fiber that borrowed holds the connection: a fiber it forks is another key, and borrows its own. Two
// fibers using one connection at once is unsafe.

type AnyFiber = Fiber.RuntimeFiber<any, any>

/**
 * One borrow from the pool by one fiber, and the borrows nested in it (`count`). Under leak detection, also when
 * it began and the span it began under (see `leak.ts`).
 */
export class Hold<A> {
  count = 1
  since = 0
  span: Tracer.AnySpan | undefined = undefined
  reported = false
  constructor(readonly entry: Entry<A>, readonly fiber: AnyFiber) {}
}

/** @internal */
export const fiberAware = <A>(pool: PoolImpl<A>): boolean => pool.options.nested !== "allow" || leak.enabled(pool)

const nestedError = <A>(pool: PoolImpl<A>, fiber: AnyFiber) =>
  Effect.fail(new NestedAcquire({ pool: pool.name, fiber: FiberId.threadName(fiber.id()) }))

/** An interruption or a defect leaves a connection in an unknown state (as `handoff.release` judges it). */
const unknownState = (cause: Cause.Cause<unknown> | undefined): boolean =>
  cause !== undefined && (Cause.isInterrupted(cause) || Cause.isDie(cause))

/** What the fiber holds from this pool, when nested borrows are detected at all. */
const heldBy = <A>(pool: PoolImpl<A>, fiber: AnyFiber): Hold<A> | undefined =>
  pool.options.nested === "allow" ? undefined : pool.holds.get(fiber)

/** A connection from the pool: the fiber now holds it, and leak detection watches it. */
const claim = <A>(pool: PoolImpl<A>, fiber: AnyFiber, entry: Entry<A>): Hold<A> => {
  const hold = new Hold(entry, fiber)
  if (pool.options.nested !== "allow") pool.holds.set(fiber, hold)
  if (leak.enabled(pool)) leak.track(pool, hold)
  return hold
}

/**
 * One borrow of the connection ends. The last one gives it back; an earlier one that was interrupted or died
 * marks it to be closed then. `then` runs after.
 */
const letGo = <A, X, E>(
  pool: PoolImpl<A>,
  hold: Hold<A>,
  failure: Cause.Cause<unknown> | undefined,
  then: Effect.Effect<X, E>
): Effect.Effect<X, E> => {
  const entry = hold.entry
  if (--hold.count > 0) {
    if (unknownState(failure)) entry.invalid = true
    return then
  }
  if (pool.holds.get(hold.fiber) === hold) pool.holds.delete(hold.fiber)
  const back = release(pool, entry, failure, then)
  return leak.enabled(pool) ? leak.returned(pool, hold, back) : back
}

/** One more borrow of the connection the fiber holds, for the duration of `f`. */
const again = <A, X, E, R>(
  pool: PoolImpl<A>,
  held: Hold<A>,
  f: (conn: A) => Effect.Effect<X, E, R>
): Effect.Effect<X, E, R> =>
  Effect.uninterruptibleMask((restore) => {
    held.count++
    return Effect.flatMap(
      Effect.exit(restore(f(held.entry.conn))),
      (exit) => letGo(pool, held, exit._tag === "Failure" ? exit.cause : undefined, exit)
    )
  })

/** `withConnection` / `withConnectionTry`. @internal */
export const use = <A, X, E, R>(
  pool: PoolImpl<A>,
  neverWait: boolean,
  f: (conn: A) => Effect.Effect<X, E, R>
): Effect.Effect<X, E | PoolError, R> =>
  Effect.withFiberRuntime((fiber) => {
    const held = heldBy(pool, fiber)
    if (held !== undefined) {
      if (pool.options.nested === "fail") return nestedError(pool, fiber)
      return again(pool, held, (conn) => applied(f, conn))
    }
    return Effect.uninterruptibleMask((restore) =>
      acquire(pool, restore, neverWait, (entry) => {
        const hold = claim(pool, fiber, entry)
        return Effect.flatMap(
          Effect.exit(restore(applied(f, entry.conn))),
          (exit) => letGo(pool, hold, exit._tag === "Failure" ? exit.cause : undefined, exit)
        )
      })
    )
  })

/** The scope's end is the borrow's. */
const heldUntilClosed = <A>(pool: PoolImpl<A>, scope: Scope.Scope, hold: Hold<A>): Effect.Effect<A> =>
  Effect.as(
    Scope.addFinalizerExit(scope, (exit) => letGo(pool, hold, Exit.isFailure(exit) ? exit.cause : undefined, Effect.void)),
    hold.entry.conn
  )

/** `get` / `tryGet`: the connection goes back when the caller's scope closes. @internal */
export const scoped = <A>(pool: PoolImpl<A>, neverWait: boolean): Effect.Effect<A, PoolError, Scope.Scope> =>
  Effect.flatMap(Effect.scope, (scope) =>
    Effect.withFiberRuntime((fiber) => {
      const held = heldBy(pool, fiber)
      if (held !== undefined) {
        if (pool.options.nested === "fail") return nestedError(pool, fiber)
        return Effect.uninterruptible(Effect.suspend(() => {
          held.count++
          return heldUntilClosed(pool, scope, held)
        }))
      }
      return Effect.uninterruptibleMask((restore) =>
        acquire(pool, restore, neverWait, (entry) => heldUntilClosed(pool, scope, claim(pool, fiber, entry)))
      )
    }))

/**
 * `withConnectionCallback`. Nested, the operation starts on the held connection. Otherwise the plain path, the
 * fiber holding nothing meanwhile (it is suspended until the operation ends, so nothing can nest in it); under
 * leak detection, `start` notes the borrow for this fiber whoever starts it.
 *
 * @internal
 */
export const callback = <A, X, E>(pool: PoolImpl<A>, start: Start<A>): Effect.Effect<X, E | PoolError> =>
  Effect.withFiberRuntime((fiber) => {
    const held = heldBy(pool, fiber)
    if (held !== undefined) {
      if (pool.options.nested === "fail") return nestedError(pool, fiber)
      return again(pool, held, (conn) => startOn(conn, start) as Effect.Effect<X, E>)
    }
    if (!leak.enabled(pool)) return plainCallback<A, X, E>(pool, start)
    let hold: Hold<A> | undefined
    const watched: Start<A> = (conn, done) => {
      const entry = pool.entries.get(conn)
      if (entry !== undefined) leak.track(pool, hold = new Hold(entry, fiber))
      return start(conn, done)
    }
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(
        Effect.exit(restore(plainCallback<A, X, E>(pool, watched))),
        (exit) => hold === undefined ? exit : leak.returned(pool, hold, exit)
      )
    )
  })

/** Starts a callback operation on a connection the fiber already holds; interrupting it runs its canceler. */
const startOn = <A>(conn: A, start: Start<A>): Effect.Effect<unknown, unknown> =>
  Effect.async<unknown, unknown>((resume) => {
    let finished = false
    const done = (exit: Exit.Exit<unknown, unknown>) => {
      if (finished) return
      finished = true
      resume(exit)
    }
    try {
      const canceler = start(conn, done)
      return canceler === undefined || finished ? undefined : canceler
    } catch (defect) {
      done(Exit.die(defect))
      return undefined
    }
  })
