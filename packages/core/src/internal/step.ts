import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import { identity } from "effect/Function"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as RuntimeFlagsPatch from "effect/RuntimeFlagsPatch"
import type { Restore } from "./handoff.js"

// A borrow's shape in as few fiber steps as effect 3 allows: the uninterruptible step it starts with
// (`maskedStep`), the wait it suspends in (`suspend`), the wait's handler pushed as a frame rather than built
// around it (`pushFrame`, `interruptibly`), and the handlers it ends with (`outcomes`).
//
// `maskedStep` is `uninterruptibleMask((restore) => withFiberRuntime((fiber) => body(restore, fiber)))` in one
// fiber step. Every borrow starts with that mask: the transaction that queues a caller (or lends it a connection) and the
// handler that cleans up after an interruption must not be separated by a point where the fiber can be
// interrupted. Built with the combinators, it is three steps of the fiber and, per run, the mask's closures and
// primitives; around a borrow that waits, that cost as much as the handoff itself.
//
// effect builds `uninterruptible(self)` as one primitive, `UpdateRuntimeFlags`, whose continuation the fiber calls
// with the flags it had before (`uninterruptibleMask` is the same primitive, its continuation choosing `restore`
// from those flags), right after it made them uninterruptible and recorded itself as the current fiber. A step is
// that primitive with our own continuation: it picks `restore` from the old flags and the fiber from
// `Fiber.getCurrentFiber`, and calls `body`. If this effect does not build `uninterruptible` that way (looked at
// once, here), or a step does not behave as the mask would (`verify`, run by every pool's `make` before it builds
// a step), steps are built from the combinators, which are what they stand for.

/** The primitive `Effect.uninterruptible` builds in effect 3, and the fields a step sets on it. */
interface FlagsPrimitive {
  readonly _op: string
  effect_instruction_i0: unknown
  effect_instruction_i1: unknown
}

const probe = Effect.uninterruptible(Effect.void) as unknown as Partial<FlagsPrimitive>
let native = probe._op === "UpdateRuntimeFlags" &&
  probe.effect_instruction_i0 === RuntimeFlagsPatch.disable(RuntimeFlags.Interruption) &&
  typeof probe.effect_instruction_i1 === "function"

const viaCombinators = <X, E, R>(
  body: (restore: Restore, fiber: Fiber.RuntimeFiber<any, any>) => Effect.Effect<X, E, R>,
  restore: Restore
): Effect.Effect<X, E, R> => Effect.withFiberRuntime<X, E, R>((fiber) => body(restore, fiber))

/**
 * `body` in one step of its fiber, uninterruptible; `restore` makes what it wraps as interruptible as the caller
 * was. The step holds no state of its own: built once, it may be run by any number of fibers.
 *
 * @internal
 */
export const maskedStep = <X, E, R>(
  body: (restore: Restore, fiber: Fiber.RuntimeFiber<any, any>) => Effect.Effect<X, E, R>
): Effect.Effect<X, E, R> => {
  // no closure bound to a name here: a step is built per borrow, and under esbuild's keepNames (tsx) each such
  // closure costs a `__name` call
  if (!native) return Effect.uninterruptibleMask((restore) => viaCombinators(body, restore))
  const step = Effect.uninterruptible(Effect.void) as unknown as FlagsPrimitive
  step.effect_instruction_i1 = (oldFlags: RuntimeFlags.RuntimeFlags) => {
    const restore: Restore = RuntimeFlags.interruption(oldFlags) ? Effect.interruptible : identity
    const fiber = Fiber.getCurrentFiber()
    return fiber._tag === "Some" ? body(restore, fiber.value) : viaCombinators(body, restore)
  }
  return step as unknown as Effect.Effect<X, E, R>
}

/**
 * The two handlers of a borrow's `Effect.matchCauseEffect`, passed in as arguments: written as an object literal,
 * each would be a closure bound to a name, which costs a `__name` call per borrow under esbuild's keepNames (tsx).
 *
 * @internal
 */
export const outcomes = <E, A, X, E2, R2>(
  onFailure: (cause: Cause.Cause<E>) => Effect.Effect<X, E2, R2>,
  onSuccess: (a: A) => Effect.Effect<X, E2, R2>
) => ({ onFailure, onSuccess })

/**
 * `Effect.async(register)` for a `register` that returns no canceler (the waits: a waiter's, a callback job's), as
 * the one `Async` primitive the fiber runs, whose `register` the fiber calls as it suspends. `Effect.async` wraps
 * that primitive in one of its own, run first, that calls `register` with a proxy of the resume: one more step
 * and three more objects per wait, a tenth of a contended borrow. Built on effect 3's primitive class (the class of
 * what `uninterruptible` returns), checked like the step (`verify`), with `Effect.async` as the fallback.
 *
 * @internal
 */
export const suspend = <A, E>(
  register: (resume: (effect: Effect.Effect<A, E>) => void) => void
): Effect.Effect<A, E> => {
  if (!bareAsync) return Effect.async<A, E>((resume) => void register(resume))
  const op = new Primitive("Async")
  op.effect_instruction_i0 = register
  op.effect_instruction_i1 = FiberId.none
  return op as unknown as Effect.Effect<A, E>
}

/**
 * A handler the fiber runs when what follows fails: effect 3's `OnFailure` continuation, as `catchAllCause` pushes
 * it, with the handler as a method (the fiber calls it on the frame), so that an object a borrow makes anyway (a
 * callback job) can be its own handler.
 *
 * @internal
 */
export interface FailureFrame {
  readonly _op: "OnFailure"
  effect_instruction_i1(cause: Cause.Cause<unknown>): Effect.Effect<unknown, unknown>
}

/** What a framed wait reaches into: effect 3's `FiberRuntime` members beyond the `RuntimeFiber` interface. */
interface FiberInternals {
  pushStack(frame: unknown): void
  isInterrupted(): boolean
  getInterruptedCause(): Cause.Cause<never>
  _asyncInterruptor: ((effect: Effect.Effect<unknown, unknown>) => void) | null
}

/**
 * For a step's body that is about to suspend: puts `frame` on the fiber's stack, so that it handles any failure of
 * the wait (the step's mask still around it, so the handler runs uninterruptibly), and returns true; or returns
 * false when waits cannot be framed here (see `verify`), and the caller builds the wait with the combinators.
 *
 * This is `catchAllCause(restore(wait), handler)` without its two primitives, the closure and the flags frame:
 * the wait stays uninterruptible in the fiber's flags, and `interruptibly` (in the wait's `register`) makes it
 * interruptible where `restore` would have, by arming the fiber's async interruptor as effect does for an
 * interruptible `Async`. An interruption of the waiting fiber resumes it with the interruption, which the frame
 * handles (uninterruptible: effect skips handlers only in an interruptible fiber); the mask's own frame then
 * makes the fiber as interruptible as it was, and re-raises the interruption. On success the frame is skipped.
 *
 * @internal
 */
export const pushFrame = (fiber: Fiber.RuntimeFiber<any, any>, frame: FailureFrame): boolean => {
  if (!framed) return false
  ;(fiber as unknown as FiberInternals).pushStack(frame)
  return true
}

/**
 * In a framed wait's `register`, for a caller that `restore` would have made interruptible: an interruption of the
 * fiber from now on resumes it (with the interruption), and one that came while it was uninterruptible resumes it
 * at once, as `restore` would have failed then.
 *
 * @internal
 */
export const interruptibly = (
  fiber: Fiber.RuntimeFiber<any, any>,
  resume: (effect: Effect.Effect<any, any>) => void
): void => {
  const internals = fiber as unknown as FiberInternals
  if (internals.isInterrupted()) return resume(Exit.failCause(internals.getInterruptedCause()))
  internals._asyncInterruptor = resume
}

/** Whether `restore` makes what it wraps interruptible (the caller was), for a framed wait. @internal */
export const restores = (restore: Restore): boolean => restore !== identity

/** effect 3's primitive class, as `uninterruptible`'s result shows it. */
const Primitive = (probe as { constructor: unknown }).constructor as new(op: string) => FlagsPrimitive
let bareAsync = native && new Primitive("Async")._op === "Async"

/** Whether a fiber has the members a framed wait uses (looked at on the first fiber `verify` sees). */
const hasInternals = (fiber: Fiber.RuntimeFiber<any, any>): boolean => {
  const internals = fiber as unknown as Partial<FiberInternals>
  return typeof internals.pushStack === "function" && typeof internals.isInterrupted === "function" &&
    typeof internals.getInterruptedCause === "function" && "_asyncInterruptor" in internals
}
/** Set by `verify` only: the probes use the internals directly, and no pool borrows before its `verify`. */
let framed = false

/** What a step tells its body: whether `restore` makes interruptible, and the fiber it runs in. */
const seen = maskedStep<readonly [boolean, boolean], never, never>((restore, fiber) =>
  Effect.flatMap(
    restore(Effect.checkInterruptible((interruptible) => Effect.succeed(interruptible))),
    (interruptible) => Effect.withFiberRuntime((current) => Effect.succeed([interruptible, fiber === current] as const))
  )
)

/**
 * What `suspend` gives back: a value resumed from inside `register`, and one resumed later from outside the fiber;
 * each waited for in a fiber of its own and only polled, so that a primitive that never resumes is a failed check,
 * not a hung pool.
 */
const resumed = Effect.suspend(() => {
  let later: ((effect: Effect.Effect<number>) => void) | undefined
  const now = suspend<number, never>((resume) => resume(Effect.succeed(1)))
  const waiting = suspend<number, never>((resume) => {
    later = resume
  })
  const yields = Effect.repeatN(Effect.yieldNow(), 3)
  return Effect.flatMap(Effect.all([Effect.fork(now), Effect.fork(waiting)]), (fibers) =>
    Effect.zipRight(
      Effect.zipRight(yields, Effect.sync(() => later?.(Effect.succeed(2)))),
      Effect.zipRight(
        yields,
        Effect.flatMap(Effect.forEach(fibers, Fiber.poll), (polled) =>
          Effect.as(
            Effect.forEach(fibers, Fiber.interrupt, { discard: true }),
            polled.map((exit) => exit._tag === "Some" && exit.value._tag === "Success" ? exit.value.value : -1)
          ))
      )
    ))
})

/** A framed wait shaped as a borrow's (`callback.framedWait`): `handled` records what the frame's handler saw. */
const probeWait = (handled: Array<string>, later: (resume: (effect: Effect.Effect<number, string>) => void) => void) =>
  maskedStep<number, string, never>((restore, fiber) => {
    const frame: FailureFrame = {
      _op: "OnFailure",
      effect_instruction_i1: (cause) =>
        Effect.flatMap(
          Effect.checkInterruptible((interruptible) => Effect.succeed(interruptible)),
          (interruptible) => {
            handled.push(`${Cause.isInterrupted(cause) ? "interrupted" : "failed"}:${interruptible}`)
            return Effect.failCause(cause)
          }
        )
    }
    if (!hasInternals(fiber)) return Effect.fail("no internals")
    ;(fiber as unknown as FiberInternals).pushStack(frame)
    return suspend<number, string>((resume) => {
      if (restores(restore)) interruptibly(fiber, resume)
      later(resume)
    })
  })

/**
 * What framed waits do, each in a fiber of its own and only polled: one interrupted while it waits (its handler
 * runs, uninterruptibly; the fiber ends interrupted), one resumed with a value (the caller is interruptible
 * again after it), one resumed with a failure (handled, then re-raised); and one in an uninterruptible caller,
 * which an interruption does not wake.
 */
const framedWaits = Effect.suspend(() => {
  const handled: Array<string> = []
  const resumes: Array<(effect: Effect.Effect<number, string>) => void> = []
  let stuck: ((effect: Effect.Effect<number, string>) => void) | undefined
  const keep = (resume: (effect: Effect.Effect<number, string>) => void) => void resumes.push(resume)
  const interruptibleAfter = Effect.flatMap(
    probeWait(handled, keep),
    (n) => Effect.checkInterruptible((interruptible) => Effect.succeed(interruptible ? n : -n))
  )
  const yields = Effect.repeatN(Effect.yieldNow(), 3)
  return Effect.flatMap(
    Effect.all([
      Effect.fork(Effect.interruptible(probeWait(handled, () => {}))),
      Effect.fork(Effect.interruptible(interruptibleAfter)),
      Effect.fork(Effect.interruptible(probeWait(handled, keep))),
      // a daemon: a fiber the check cannot end (a future effect) must not hold up the one that runs the check
      Effect.forkDaemon(Effect.uninterruptible(probeWait(handled, (resume) => {
        stuck = resume
      })))
    ]),
    (fibers) =>
      Effect.zipRight(
        Effect.zipRight(
          yields,
          Effect.sync(() => {
            fibers[0].unsafeInterruptAsFork(FiberId.none)
            fibers[3].unsafeInterruptAsFork(FiberId.none)
            resumes[0]?.(Effect.succeed(5))
            resumes[1]?.(Effect.fail("x"))
          })
        ),
        Effect.zipRight(
          yields,
          Effect.flatMap(Effect.forEach(fibers, Fiber.poll), (polled) => {
            const [interrupted, succeeded, failed, uninterruptible] = polled
            const ok = interrupted._tag === "Some" && Exit.isInterrupted(interrupted.value) &&
              succeeded._tag === "Some" && Exit.isSuccess(succeeded.value) && succeeded.value.value === 5 &&
              failed._tag === "Some" && Exit.isFailure(failed.value) && !Exit.isInterrupted(failed.value) &&
              uninterruptible._tag === "None" &&
              handled.length === 2 && handled.includes("interrupted:false") && handled.includes("failed:false")
            stuck?.(Effect.succeed(0)) // so that it ends (interrupted) rather than outlive the check
            return Effect.as(Effect.forEach(fibers, Fiber.interruptFork, { discard: true }), ok)
          })
        )
      )
  )
})

/**
 * Checks, once per process, that a step restores the caller's interruptibility and names its fiber, from an
 * interruptible and from an uninterruptible caller, that `suspend` resumes with what it is given, and that a
 * framed wait handles, restores and ignores interruptions as `catchAllCause(restore(wait))` would (`framedWaits`);
 * what fails is built from the combinators from now on (steps, waits with `Effect.async`, unframed waits).
 *
 * @internal
 */
export const verify: Effect.Effect<void> = Effect.suspend(() => {
  if (!native || verified) return Effect.void
  return Effect.map(
    Effect.all([Effect.interruptible(seen), Effect.uninterruptible(seen), resumed]),
    ([[fromInterruptible, sameFiber1], [fromUninterruptible, sameFiber2], [now, later]]) => {
      native = fromInterruptible && !fromUninterruptible && sameFiber1 && sameFiber2
      bareAsync = native && now === 1 && later === 2
    }
  ).pipe(
    Effect.zipRight(Effect.suspend(() => bareAsync ? framedWaits : Effect.succeed(false))),
    Effect.map((ok) => {
      verified = true
      framed = ok
    })
  )
})

let verified = false

/** Whether steps are the one primitive (true on the effect version this project pins), for tests. @internal */
export const isOneStep = (): boolean => native

/** Whether waits are the one `Async` primitive (true on the effect version this project pins), for tests. @internal */
export const isOneAsync = (): boolean => bareAsync

/** Whether waits are framed (`pushFrame`; true on the effect version this project pins), for tests. @internal */
export const isFramed = (): boolean => framed
