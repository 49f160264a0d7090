import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Metric, Option, Random, Tracer } from "effect"
import { ConnectionPool } from "../src/index.js"
import { adjust, hold, makeDriver, settle } from "./utils.js"

describe("interruption", () => {
  it.scoped("a waiter interrupted at any instant around a handoff leaks nothing", () =>
    Effect.gen(function*() {
      const outcomes = new Set<boolean>()
      for (let delay = 0; delay < 40; delay++) {
        const t = makeDriver()
        yield* Effect.scoped(Effect.gen(function*() {
          const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
          const holder = yield* hold(pool)
          yield* Deferred.await(holder.got)
          const waiter = yield* hold(pool)
          yield* settle
          yield* holder.release
          for (let i = 0; i < delay; i++) yield* Effect.yieldNow()
          yield* Fiber.interrupt(waiter.fiber)
          yield* settle
          const s = yield* pool.stats
          const held = Option.isSome(yield* Deferred.poll(waiter.got))
          assert.deepStrictEqual([s.inUse, s.waiting, s.pending], [0, 0, 0], `delay ${delay}`)
          // a connection handed to a waiter interrupted before it could take it is not counted as acquired
          assert.strictEqual(s.acquired, held ? 2 : 1, `delay ${delay}`)
          if (held) {
            // interrupted while using it: closed, its state is unknown
            assert.deepStrictEqual([s.total, t.opened[0].closes], [0, 1], `delay ${delay}`)
          } else {
            // interrupted before it got there, even if the handoff had happened: the connection is back
            assert.deepStrictEqual([s.total, s.idle, t.opened[0].closes], [1, 1, 0], `delay ${delay}`)
            assert.strictEqual(yield* pool.withConnection((c) => Effect.succeed(c.id)), 1)
          }
          outcomes.add(held)
        }))
        assert.strictEqual(t.open().length, 0, `delay ${delay}`)
      }
      assert.strictEqual(outcomes.size, 2) // both sides of the race were exercised
    }))

  it.scoped("a caller interrupted while a connection is being opened for it leaves the connection in the pool", () =>
    Effect.gen(function*() {
      const t = makeDriver({ connectDelay: "1 second" })
      const pool = yield* ConnectionPool.make({ driver: t.driver })
      const fiber = yield* Effect.fork(pool.withConnection(() => Effect.void))
      yield* adjust("500 millis")
      yield* Fiber.interrupt(fiber)
      assert.strictEqual((yield* pool.stats).pending, 1)
      yield* adjust("500 millis")
      const s = yield* pool.stats
      assert.deepStrictEqual([s.total, s.idle, s.pending, s.waiting], [1, 1, 0, 0])
    }))

  it.scoped("a caller interrupted while its connection is validated has the connection closed", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      let slow = false
      const pool = yield* ConnectionPool.make({
        driver: { ...t.driver, validate: () => slow ? Effect.as(Effect.sleep("1 second"), true) : Effect.succeed(true) }
      })
      yield* pool.withConnection(() => Effect.void)
      yield* adjust("1 minute")
      slow = true
      const fiber = yield* Effect.fork(pool.withConnection(() => Effect.void))
      yield* settle
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(t.opened[0].closes, 1)
      const s = yield* pool.stats
      assert.deepStrictEqual([s.total, s.idle], [0, 0])
    }))

  it.live("hundreds of fibers with random timeouts and interrupts leave a consistent pool, in both borrow styles", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      yield* Effect.scoped(Effect.gen(function*() {
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 5, acquireTimeout: "20 millis" })
        const worker = Effect.gen(function*() {
          for (let i = 0; i < 30; i++) {
            const r = yield* Random.nextIntBetween(0, 10)
            const use = r < 2 ? Effect.die("boom") : r < 4 ? Effect.fail("typed") : Effect.sleep(`${r} millis`)
            // the same operation in callback form, every other time
            const callback = (_: unknown, done: (exit: Exit.Exit<void, string>) => void) => {
              if (r < 2) return done(Exit.die("boom"))
              if (r < 4) return done(Exit.fail("typed"))
              const timer = setTimeout(() => done(Exit.void), r)
              return Effect.sync(() => clearTimeout(timer))
            }
            const borrow = i % 2 === 0 ? pool.withConnection(() => use) : pool.withConnectionCallback(callback)
            yield* borrow.pipe(Effect.timeout(`${r * 2} millis`), Effect.ignore, Effect.sandbox, Effect.ignore)
          }
        })
        const fibers = yield* Effect.forEach(Array.from({ length: 300 }), () => Effect.fork(worker))
        yield* Effect.sleep("50 millis")
        yield* Effect.forEach(fibers.filter((_, i) => i % 3 === 0), Fiber.interrupt, { concurrency: "unbounded" })
        yield* Effect.forEach(fibers, Fiber.await, { discard: true })
        const s = yield* pool.stats
        assert.deepStrictEqual([s.inUse, s.waiting, s.pending], [0, 0, 0])
        assert.strictEqual(t.open().length, s.total)
        assert.isAtMost(s.total, 5)
      }))
      assert.strictEqual(t.open().length, 0)
      assert.isTrue(t.opened.every((c) => c.closes === 1))
    }), 30_000)
})

describe("observability", () => {
  it.scoped("publishes db.client.connection.* metrics tagged with the pool's name", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, name: "metrics-test", maxSize: 1, acquireTimeout: "1 second" })
      const holder = yield* hold(pool)
      yield* Deferred.await(holder.got)
      yield* Effect.fork(Effect.exit(Effect.scoped(pool.get)))
      yield* adjust("1 second")
      const find = (name: string, state?: string) =>
        Metric.unsafeSnapshot().find((m) =>
          m.metricKey.name === name &&
          m.metricKey.tags.some((tag) => tag.key === "db.client.connection.pool.name" && tag.value === "metrics-test") &&
          (state === undefined || m.metricKey.tags.some((tag) => tag.key === "db.client.connection.state" && tag.value === state))
        )?.metricState as any
      assert.strictEqual(find("db.client.connection.count", "used").count, 1) // UpDownCounters: counter state
      assert.strictEqual(find("db.client.connection.count", "idle").count, 0)
      assert.strictEqual(find("db.client.connection.max").count, 1)
      assert.strictEqual(find("db.client.connection.timeouts").count, 1)
      assert.strictEqual(find("db.client.connection.wait_time").count, 1)
      assert.strictEqual(find("db.client.connection.create_time").count, 1)
      yield* holder.release
      yield* settle
      assert.strictEqual(find("db.client.connection.count", "idle").count, 1)
      assert.strictEqual(find("db.client.connection.use_time").count, 1)
    }))

  it.scoped("an acquire that waits is traced as a child of the caller's span", () =>
    Effect.gen(function*() {
      const spans: Array<string> = []
      const native = yield* Effect.tracer
      const tracer = Tracer.make({
        span: (...args: Parameters<Tracer.Tracer["span"]>) => {
          spans.push(args[0])
          return native.span(...args)
        },
        context: native.context
      })
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver })
      const traced = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        effect.pipe(Effect.withSpan("request"), Effect.withTracer(tracer))
      yield* traced(pool.withConnection(() => Effect.void))
      assert.deepStrictEqual(spans, ["request", "ConnectionPool.acquire"]) // it opened a connection
      yield* traced(pool.withConnection(() => Effect.void))
      assert.deepStrictEqual(spans.length, 3) // served at once from idle: only the request's span
      const holder = yield* hold(pool)
      yield* Deferred.await(holder.got)
      yield* pool.resize({ maxSize: 1 })
      const waiter = yield* Effect.fork(traced(pool.withConnection(() => Effect.void)))
      yield* settle
      yield* holder.release
      yield* Fiber.join(waiter)
      assert.deepStrictEqual(spans.slice(3), ["request", "ConnectionPool.acquire"]) // it waited
      // no parent span, no trace to join: no span
      const before = spans.length
      yield* pool.invalidate(t.opened[0])
      yield* pool.drain
      yield* pool.withConnection(() => Effect.void).pipe(Effect.withTracer(tracer))
      assert.strictEqual(spans.length, before)
    }))
})
