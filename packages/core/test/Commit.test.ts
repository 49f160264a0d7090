import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, FiberRef, STM, TRef } from "effect"
import { makeCommitter } from "../src/internal/commit.js"

// The hot path's commit (internal/commit.ts) writes the state TRef the way STM.commit does; these pin down that
// STM transactions on the same ref see its writes and are woken by them, on the effect version we run.
describe("committing a transition without the STM journal", () => {
  const committer = <S>(ref: TRef.TRef<S>) =>
    Effect.map(FiberRef.get(FiberRef.currentScheduler), (scheduler) => makeCommitter(ref, scheduler)!)

  it.effect("a write is what an STM transaction then reads, and the result is the transition's", () =>
    Effect.gen(function*() {
      const ref = yield* TRef.make({ n: 1 })
      const commit = yield* committer(ref)
      const result = commit((s) => [s.n * 10, { n: s.n + 1 }] as const)
      assert.strictEqual(result, 10)
      assert.deepStrictEqual(yield* STM.commit(TRef.get(ref)), { n: 2 })
      yield* STM.commit(TRef.update(ref, (s) => ({ n: s.n + 1 })))
      assert.strictEqual(commit((s) => [s.n, s] as const), 3) // and it reads what STM wrote
    }))

  it.effect("a transaction suspended on the ref (STM.check) wakes on a write, and only then", () =>
    Effect.gen(function*() {
      const ref = yield* TRef.make(0)
      const commit = yield* committer(ref)
      const waiting = yield* Effect.fork(STM.commit(STM.flatMap(TRef.get(ref), (n) => STM.check(() => n >= 2))))
      yield* Effect.yieldNow()
      commit((n) => [undefined, n + 1] as const)
      yield* Effect.yieldNow()
      yield* Effect.yieldNow()
      assert.isUndefined(waiting.unsafePoll() ?? undefined) // woken, checked 1 < 2, suspended again
      commit((n) => [undefined, n] as const) // no change: nothing to wake
      commit((n) => [undefined, n + 1] as const)
      yield* Fiber.join(waiting)
      assert.strictEqual(yield* STM.commit(TRef.get(ref)), 2)
    }))

  it("is not made for something that is not laid out as effect's TRef", () => {
    const scheduler = { scheduleTask: () => {}, shouldYield: () => false } as any
    assert.isUndefined(makeCommitter({} as TRef.TRef<number>, scheduler))
    assert.isUndefined(makeCommitter({ versioned: 1, todos: new Map() } as unknown as TRef.TRef<number>, scheduler))
  })
})
