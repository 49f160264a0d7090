import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import { isOneAsync, isOneStep, maskedStep, suspend, verify } from "../src/internal/step.js"

// Every borrow starts with `maskedStep` (internal/step.ts): the mask and the fiber in one step of the fiber, built
// on the primitive effect's `uninterruptible` is made of. These pin down that it is that primitive on the effect
// version we run, and that it means what `uninterruptibleMask` + `withFiberRuntime` mean.
describe("on the effect version we pin", () => {
  it.effect("a borrow's step and wait are one primitive each, and verify as such", () =>
    Effect.gen(function*() {
      yield* verify
      assert.isTrue(isOneStep())
      assert.isTrue(isOneAsync())
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
