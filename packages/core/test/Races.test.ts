import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Exit, Fiber, Scheduler, Tracer } from "effect"
import { ConnectionPool } from "../src/index.js"
import { hold, makeDriver, settle } from "./utils.js"

/**
 * A clock that arms a one-shot yield the first time it is read after `arm()`, and a scheduler that performs it:
 * the caller's fiber yields right after the acquire transaction (which reads the clock to stamp its waiter)
 * commits, as effect's runtime does on its own every `maxOpsBeforeYield` ops.
 */
const yieldAfterTx = (clock: Clock.Clock) => {
  let armed = false
  let fire = false
  let yielded = false
  const hooked: Clock.Clock = Object.assign(Object.create(clock), {
    unsafeCurrentTimeMillis: () => {
      if (armed) [armed, fire] = [false, true]
      return clock.unsafeCurrentTimeMillis()
    }
  })
  const scheduler: Scheduler.Scheduler = {
    scheduleTask: (task, priority) => Scheduler.defaultScheduler.scheduleTask(task, priority),
    shouldYield: (fiber) => {
      if (!fire) return Scheduler.defaultShouldYield(fiber)
      fire = false
      yielded = true
      return 0
    }
  }
  return { clock: hooked, scheduler, arm: () => (armed = true), yielded: () => yielded }
}

/** A callback borrow, forked on `scheduler`, that counts how often its operation was started. */
const countedCallback = (pool: ConnectionPool.ConnectionPool<unknown>, scheduler: Scheduler.Scheduler) =>
  Effect.gen(function*() {
    let count = 0
    const caller = yield* Effect.fork(
      pool.withConnectionCallback<number, never>((_, done) => {
        count++
        done(Exit.succeed(1))
      }).pipe(Effect.withScheduler(scheduler))
    )
    return { caller, starts: () => count }
  })

/** A pool of one connection, held, on a clock that can arm the one-shot yield. */
const heldPool = Effect.gen(function*() {
  const t = makeDriver()
  const hook = yieldAfterTx(yield* Effect.clock)
  const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1, shutdownTimeout: "10 millis" }).pipe(
    Effect.withClock(hook.clock)
  )
  const holder = yield* hold(pool)
  yield* Deferred.await(holder.got)
  return { holder, hook, pool }
})

/**
 * Races with the runtime's own yields: effect's scheduler may suspend a fiber between any two steps (every
 * `maxOpsBeforeYield` ops). These tests force that yield at the worst instants. (Found in review.)
 */
describe("races with the runtime's own yields", () => {
  it.scopedLive("a release that takes a callback waiter before its operation is attached still runs it", () =>
    Effect.gen(function*() {
      const { holder, hook, pool } = yield* heldPool
      hook.arm()
      const { caller, starts } = yield* countedCallback(pool, hook.scheduler)
      yield* holder.release // the holder's release takes the queued waiter, which has no job yet
      yield* settle
      assert.isTrue(hook.yielded())
      const s = yield* pool.stats
      assert.deepStrictEqual({ starts: starts(), done: caller.unsafePoll() !== null, inUse: s.inUse }, {
        starts: 1,
        done: true,
        inUse: 0
      })
    }))

  it.scopedLive("the same yield with withConnection", () =>
    Effect.gen(function*() {
      const { holder, hook, pool } = yield* heldPool
      hook.arm()
      const caller = yield* Effect.fork(
        pool.withConnection(() => Effect.succeed(1)).pipe(Effect.withScheduler(hook.scheduler))
      )
      yield* holder.release
      yield* settle
      assert.isTrue(hook.yielded())
      const s = yield* pool.stats
      assert.deepStrictEqual({ done: caller.unsafePoll() !== null, inUse: s.inUse }, { done: true, inUse: 0 })
    }))

  it.scopedLive("a callback caller interrupted before it could wait leaves the queue; its operation never runs", () =>
    Effect.gen(function*() {
      const { holder, hook, pool } = yield* heldPool
      hook.arm()
      const { caller, starts } = yield* countedCallback(pool, hook.scheduler)
      yield* Effect.yieldNow()
      assert.isTrue(hook.yielded())
      yield* Fiber.interrupt(caller) // e.g. a statement timeout firing now, while the caller is uninterruptible
      assert.deepStrictEqual((yield* pool.stats).waiting, 0)
      yield* holder.release
      yield* settle
      const s = yield* pool.stats
      assert.deepStrictEqual({ starts: starts(), inUse: s.inUse, idle: s.idle }, { starts: 0, inUse: 0, idle: 1 })
    }))

  it.scopedLive("a withConnection caller interrupted before it could wait leaves the queue", () =>
    Effect.gen(function*() {
      const { holder, hook, pool } = yield* heldPool
      hook.arm()
      const caller = yield* Effect.fork(
        pool.withConnection(() => Effect.succeed(1)).pipe(Effect.withScheduler(hook.scheduler))
      )
      yield* Effect.yieldNow()
      assert.isTrue(hook.yielded())
      yield* Fiber.interrupt(caller)
      yield* holder.release
      yield* settle
      const s = yield* pool.stats
      assert.deepStrictEqual({ inUse: s.inUse, idle: s.idle, waiting: s.waiting }, { inUse: 0, idle: 1, waiting: 0 })
    }))

  it.scopedLive("a callback wait handed a connection while its span is being made still ends the span", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const base = yield* Effect.clock
      let nanosArmed = -1
      let fire = false
      const clock: Clock.Clock = Object.assign(Object.create(base), {
        unsafeCurrentTimeNanos: () => {
          if (nanosArmed > 0 && --nanosArmed === 0) fire = true
          return base.unsafeCurrentTimeNanos()
        }
      })
      const scheduler: Scheduler.Scheduler = {
        scheduleTask: (task, priority) => Scheduler.defaultScheduler.scheduleTask(task, priority),
        shouldYield: (fiber) => (fire ? ((fire = false), 0) : Scheduler.defaultShouldYield(fiber))
      }
      const native = yield* Effect.tracer
      const ended: Array<string> = []
      const tracer = Tracer.make({
        span: (...args) => {
          const span = native.span(...args)
          const end = span.end.bind(span)
          return Object.assign(span, {
            end: (time: bigint, exit: Exit.Exit<unknown, unknown>) => {
              ended.push(span.name)
              end(time, exit)
            }
          })
        },
        context: native.context
      })
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1, shutdownTimeout: "10 millis" }).pipe(
        Effect.withClock(clock)
      )
      const holder = yield* hold(pool)
      yield* Deferred.await(holder.got)
      const caller = yield* Effect.fork(Effect.gen(function*() {
        nanosArmed = 2 // 1: the waiter's stamp in the transaction; 2: makeSpan's start time
        return yield* pool.withConnectionCallback<number, never>((_, done) => done(Exit.succeed(1)))
      }).pipe(
        Effect.withSpan("request"),
        Effect.withClock(clock),
        Effect.withTracer(tracer),
        Effect.withScheduler(scheduler)
      ))
      yield* holder.release
      assert.strictEqual(yield* Fiber.join(caller), 1)
      assert.deepStrictEqual(ended, ["ConnectionPool.acquire", "request"])
    }))
})
