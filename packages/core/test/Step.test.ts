import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber } from "effect"
import {
  type FailureFrame,
  interruptibly,
  isFramed,
  isOneAsync,
  isOneStep,
  maskedStep,
  pushFrame,
  restores,
  suspend,
  verify
} from "../src/internal/step.js"

// Every borrow starts with `maskedStep` (internal/step.ts): the mask and the fiber in one step of the fiber, built
// on the primitive effect's `uninterruptible` is made of. These pin down that it is that primitive on the effect
// version we run, and that it means what `uninterruptibleMask` + `withFiberRuntime` mean.
describe("on the effect version we pin", () => {
  it.effect("a borrow's step and wait are one primitive each, its wait framed, and verify as such", () =>
    Effect.gen(function*() {
      yield* verify
      assert.isTrue(isOneStep())
      assert.isTrue(isOneAsync())
      assert.isTrue(isFramed())
    }))
})

describe("a borrow's first step", () => {
  const probe = maskedStep<readonly [boolean, boolean, boolean], never, never>((restore, fiber) =>
    Effect.checkInterruptible((inside) =>
      Effect.flatMap(
        restore(Effect.checkInterruptible((restored) => Effect.succeed(restored))),
        (restored) => Effect.withFiberRuntime((current) => Effect.succeed([inside, restored, fiber === current] as const))
      )
    )
  )

  it.effect("runs uninterruptibly, restores an interruptible caller, and names the caller's fiber", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* Effect.interruptible(probe), [false, true, true])
      assert.deepStrictEqual(yield* Effect.uninterruptible(probe), [false, false, true])
      // and the caller is as interruptible after it as before
      yield* Effect.interruptible(Effect.zipRight(probe, Effect.checkInterruptible((i) => Effect.sync(() => assert.isTrue(i)))))
    }))

  it.effect("one step may be run by many fibers at once", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const step = maskedStep<number, never, never>((restore, fiber) =>
        Effect.as(restore(Deferred.await(gate)), fiber.id().id)
      )
      const fibers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(step))
      yield* Deferred.succeed(gate, undefined)
      const ids = yield* Effect.forEach(fibers, Fiber.join)
      assert.deepStrictEqual(ids, fibers.map((f) => f.id().id))
    }))

  it.effect("an interruption reaches the restored part only, and the uninterruptible part runs to its end", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      let after = false
      const step = maskedStep<void, never, never>((restore) =>
        Effect.ensuring(
          restore(Effect.zipRight(Deferred.succeed(started, undefined), Effect.never)),
          Effect.sync(() => void (after = true))
        )
      )
      const fiber = yield* Effect.fork(step)
      yield* Deferred.await(started)
      const exit = yield* Fiber.interrupt(fiber)
      assert.isTrue(Exit.isInterrupted(exit))
      assert.isTrue(after)
    }))
})

// A wait (`suspend`, internal/step.ts) is effect's bare `Async` primitive, without `Effect.async`'s wrapper.
describe("a borrow's wait", () => {

  it.effect("resumes with what it is given, at once or later, and an interruption ends it", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* suspend<number, never>((resume) => resume(Effect.succeed(7))), 7)
      let later: ((effect: Effect.Effect<number, string>) => void) | undefined
      const waiting = yield* Effect.fork(suspend<number, string>((resume) => {
        later = resume
      }))
      yield* Effect.yieldNow()
      later!(Effect.fail("no"))
      assert.deepStrictEqual(yield* Fiber.await(waiting), Exit.fail("no"))
      const stuck = yield* Effect.fork(suspend<number, never>(() => {}))
      yield* Effect.yieldNow()
      assert.isTrue(Exit.isInterrupted(yield* Fiber.interrupt(stuck)))
    }))
})

describe("a framed wait", () => {
  // what `callback.ts` builds for a contended borrow: the step, a frame pushed as the wait's handler, the wait
  const framed = (seen: Array<string>, register: (resume: (effect: Effect.Effect<number, string>) => void) => void) =>
    maskedStep<number, string, never>((restore, fiber) => {
      const frame: FailureFrame = {
        _op: "OnFailure",
        effect_instruction_i1: (cause) =>
          Effect.checkInterruptible((interruptible) => {
            seen.push(`${Cause.isInterrupted(cause) ? "interrupted" : "failed"}, interruptible: ${interruptible}`)
            return Effect.failCause(cause)
          })
      }
      assert.isTrue(pushFrame(fiber, frame))
      return suspend<number, string>((resume) => {
        if (restores(restore)) interruptibly(fiber, resume)
        register(resume)
      })
    })

  it.effect("an interruption while it waits runs the handler, uninterruptibly, and ends the caller interrupted", () =>
    Effect.gen(function*() {
      yield* verify
      const seen: Array<string> = []
      const waiting = yield* Effect.fork(Effect.interruptible(framed(seen, () => {})))
      yield* Effect.yieldNow()
      assert.isTrue(Exit.isInterrupted(yield* Fiber.interrupt(waiting)))
      assert.deepStrictEqual(seen, ["interrupted, interruptible: false"])
    }))

  it.effect("a value skips the handler and leaves the caller as interruptible as it was; a failure is handled", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const after = (effect: Effect.Effect<number, string>) =>
        Effect.flatMap(effect, (n) => Effect.checkInterruptible((interruptible) => Effect.succeed([n, interruptible])))
      assert.deepStrictEqual(yield* Effect.interruptible(after(framed(seen, (resume) => resume(Effect.succeed(1))))), [1, true])
      assert.deepStrictEqual(yield* Effect.uninterruptible(after(framed(seen, (resume) => resume(Effect.succeed(2))))), [
        2,
        false
      ])
      assert.deepStrictEqual(seen, [])
      const failed = yield* Effect.exit(framed(seen, (resume) => resume(Effect.fail("no"))))
      assert.deepStrictEqual(failed, Exit.fail("no"))
      assert.deepStrictEqual(seen, ["failed, interruptible: false"])
    }))

  it.effect("an uninterruptible caller is not woken by an interruption: it gets its value, then the interruption", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      let later: ((effect: Effect.Effect<number, string>) => void) | undefined
      const waiting = yield* Effect.fork(Effect.uninterruptible(framed(seen, (resume) => {
        later = resume
      })))
      yield* Effect.yieldNow()
      yield* Fiber.interruptFork(waiting)
      yield* Effect.repeatN(Effect.yieldNow(), 3)
      assert.isTrue((yield* Fiber.poll(waiting))._tag === "None")
      later!(Effect.succeed(3))
      assert.isTrue(Exit.isInterrupted(yield* Fiber.await(waiting)))
      assert.deepStrictEqual(seen, [])
    }))
})
