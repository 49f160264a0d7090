import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Scope from "effect/Scope"
import { NestedAcquire, type PoolError } from "../PoolError.js"
import { acquireIn, release, releaseNow } from "./handoff.js"
import * as leak from "./leak.js"
import { applied, type PoolImpl } from "./pool.js"
import { maskedStep, outcomes } from "./step.js"
import type { Entry } from "./state.js"
import type { Start } from "./waiter.js"

// The borrow paths that know their fiber, taken instead of the plain ones in `pool.ts` unless `nested: "allow"`
// and leak detection is off. What a fiber holds is in the pool's `holds`, keyed by the fiber itself: state local
// to the fiber, as a `FiberRef` would be, but whose first write on a fiber does not copy the fiber's whole
// `FiberRefs` map (effect 3's are immutable), which cost a fifth of a borrow for a fiber per request; a weak map,
// so a fiber's entry goes with it. A nested borrow (the fiber asks again while it holds one) reuses the fiber's
// connection (`"reuse"`) or fails at once (`"fail"`) instead of waiting for a second one, which deadlocks the
// pool when `maxSize` fibers all do it.
//
// Only the fiber that borrowed holds the connection: a fiber it forks is another key, and borrows its own. Two
// fibers using one connection at once is unsafe.

type AnyFiber = Fiber.RuntimeFiber<any, any>

/** What one fiber holds from one pool: a connection, and how many borrows (the first and those nested in it) use it. */
export class Hold<A> {
  entry: Entry<A> | undefined = undefined
  count = 0
  borrow: leak.Borrow<A> | undefined = undefined
}

/** @internal */
export const fiberAware = <A>(pool: PoolImpl<A>): boolean => pool.options.nested !== "allow" || leak.enabled(pool)

const nestedError = <A>(pool: PoolImpl<A>, fiber: AnyFiber) =>
  Effect.fail(new NestedAcquire({ pool: pool.name, fiber: FiberId.threadName(fiber.id()) }))

/** An interruption or a defect leaves a connection in an unknown state (as `handoff.release` judges it). */
const unknownState = (cause: Cause.Cause<unknown> | undefined): boolean =>
  cause !== undefined && (Cause.isInterrupted(cause) || Cause.isDie(cause))

/** The fiber's hold on this pool (made on its first borrow), when nested borrows are detected at all. */
const holdOf = <A>(pool: PoolImpl<A>, fiber: AnyFiber): Hold<A> | undefined => {
  if (pool.options.nested === "allow") return undefined
  let hold = pool.holds.get(fiber)
  if (hold === undefined) pool.holds.set(fiber, hold = new Hold())
  return hold
}

/** A connection from the pool: the fiber now holds it, and leak detection watches it. */
const claim = <A>(
  pool: PoolImpl<A>,
  fiber: AnyFiber,
  hold: Hold<A> | undefined,
  entry: Entry<A>
): leak.Borrow<A> | undefined => {
  const borrow = leak.enabled(pool) ? leak.track(pool, entry, fiber) : undefined
  if (hold !== undefined) {
    hold.entry = entry
    hold.count = 1
    hold.borrow = borrow
  }
  return borrow
}

/**
 * One borrow of the connection ends. The last one gives it back; an earlier one that was interrupted or died
 * marks it to be closed then. `then` runs after.
 */
const letGo = <A, X, E>(
  pool: PoolImpl<A>,
  hold: Hold<A> | undefined,
  entry: Entry<A>,
  borrow: leak.Borrow<A> | undefined,
  failure: Cause.Cause<unknown> | undefined,
  then: Effect.Effect<X, E>
): Effect.Effect<X, E> => {
  if (hold !== undefined && hold.entry === entry) {
    if (--hold.count > 0) {
      if (unknownState(failure)) entry.invalid = true
      return then
    }
    hold.entry = undefined
    hold.borrow = undefined
  }
  // committed now when nothing watches the borrow (this runs at the release, from a continuation or finalizer)
  if (borrow === undefined) return releaseNow(pool, entry, failure, then)
  return leak.returned(pool, borrow, release(pool, entry, failure, then))
}

/** One more borrow of the connection the fiber holds, for the duration of `f`. */
const again = <A, X, E, R>(
  pool: PoolImpl<A>,
  hold: Hold<A>,
  entry: Entry<A>,
  f: (conn: A) => Effect.Effect<X, E, R>
): Effect.Effect<X, E, R> =>
  Effect.uninterruptibleMask((restore) => {
    hold.count++
    const borrow = hold.borrow
    return Effect.flatMap(
      Effect.exit(restore(f(entry.conn))),
      (exit) => letGo(pool, hold, entry, borrow, exit._tag === "Failure" ? exit.cause : undefined, exit)
    )
  })

/** `withConnection` / `withConnectionTry`. @internal */
export const use = <A, X, E, R>(
  pool: PoolImpl<A>,
  neverWait: boolean,
  f: (conn: A) => Effect.Effect<X, E, R>
): Effect.Effect<X, E | PoolError, R> =>
  maskedStep<X, E | PoolError, R>((restore, fiber) => {
    const hold = holdOf(pool, fiber)
    const held = hold?.entry
    if (held !== undefined) {
      if (pool.options.nested === "fail") return nestedError(pool, fiber)
      return restore(again(pool, hold!, held, (conn) => applied(f, conn)))
    }
    return acquireIn(pool, restore, neverWait, fiber, (entry) => {
      const borrow = claim(pool, fiber, hold, entry)
      // one continuation for both outcomes (`Effect.exit` and a `flatMap` are two)
      return Effect.matchCauseEffect(
        restore(applied(f, entry.conn)),
        outcomes(
          (cause) => letGo(pool, hold, entry, borrow, cause, Effect.failCause(cause)),
          (x: X) => letGo(pool, hold, entry, borrow, undefined, Effect.succeed(x))
        )
      )
    })
  })

/** The scope's end is the borrow's. */
const heldUntilClosed = <A>(
  pool: PoolImpl<A>,
  scope: Scope.Scope,
  hold: Hold<A> | undefined,
  entry: Entry<A>,
  borrow: leak.Borrow<A> | undefined
): Effect.Effect<A> =>
  Effect.as(
    Scope.addFinalizerExit(
      scope,
      (exit) => letGo(pool, hold, entry, borrow, Exit.isFailure(exit) ? exit.cause : undefined, Effect.void)
    ),
    entry.conn
  )

/**
 * `get` / `tryGet`: the connection goes back when the caller's scope closes. The scope is read from the fiber's
 * context in the same step that finds the fiber (one step instead of `Effect.scope` and a `flatMap`).
 *
 * @internal
 */
export const scoped = <A>(pool: PoolImpl<A>, neverWait: boolean): Effect.Effect<A, PoolError, Scope.Scope> =>
  maskedStep<A, PoolError, never>((restore, fiber) => {
    const scope = Context.unsafeGet(fiber.currentContext, Scope.Scope)
    const hold = holdOf(pool, fiber)
    const held = hold?.entry
    if (held !== undefined) {
      if (pool.options.nested === "fail") return nestedError(pool, fiber)
      hold!.count++
      return heldUntilClosed(pool, scope, hold, held, hold!.borrow)
    }
    return acquireIn(pool, restore, neverWait, fiber, (entry) =>
      heldUntilClosed(pool, scope, hold, entry, claim(pool, fiber, hold, entry)))
  }) as Effect.Effect<A, PoolError, Scope.Scope>

/**
 * `withConnectionCallback`, in the step that finds the fiber (see `callback.ts`): nested, the operation starts on
 * the held connection; under leak detection, `start` notes the borrow for this fiber whoever starts it, around
 * `plain`. Otherwise `undefined`: the plain path, the fiber holding nothing meanwhile (it is suspended until the
 * operation ends, so nothing can nest in it). Run by the caller inside `restore`.
 *
 * @internal
 */
export const callbackOf = <A>(
  pool: PoolImpl<A>,
  fiber: AnyFiber,
  start: Start<A>,
  plain: (pool: PoolImpl<A>, start: Start<A>) => Effect.Effect<unknown, unknown>
): Effect.Effect<unknown, unknown> | undefined => {
  // read only: the fiber is suspended until the operation ends, so nothing can nest in it
  const hold = pool.options.nested === "allow" ? undefined : pool.holds.get(fiber)
  const held = hold?.entry
  if (held !== undefined) {
    if (pool.options.nested === "fail") return nestedError(pool, fiber)
    return again(pool, hold!, held, (conn) => startOn(conn, start))
  }
  if (!leak.enabled(pool)) return undefined
  let borrow: leak.Borrow<A> | undefined
  const watched: Start<A> = (conn, done) => {
    const entry = pool.entries.get(conn)
    if (entry !== undefined) borrow = leak.track(pool, entry, fiber)
    return start(conn, done)
  }
  return Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(
      Effect.exit(restore(plain(pool, watched))),
      (exit) => borrow === undefined ? exit : leak.returned(pool, borrow, exit)
    )
  )
}

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
