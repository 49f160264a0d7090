import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Duration, Effect, Exit, FastCheck as fc, Fiber, Option, TestClock, TestContext } from "effect"
import { ConnectionPool, type PoolError } from "../src/index.js"
import { isPoolError } from "../src/PoolError.js"
import { adjust, hold, makeDriver, settle, type TestDriver } from "./utils.js"

// `acquireTimeout` is one deadline for the whole acquire: waiting, connecting and validating together.

const timeoutOf = (error: PoolError.PoolError): PoolError.PoolTimeout => {
  if (error._tag !== "PoolTimeout") throw new Error(`expected PoolTimeout, got ${error._tag}: ${error.message}`)
  return error
}

const phases = (e: PoolError.PoolTimeout) => ({
  phase: e.phase,
  limit: e.limit,
  waited: Duration.toMillis(e.waited),
  waitingMs: e.waitingMs,
  connectingMs: e.connectingMs,
  validatingMs: e.validatingMs
})

/** Nothing leaks: the pool counts exactly the connections the driver has open. */
const assertNoLeak = (pool: ConnectionPool.ConnectionPool<unknown>, t: TestDriver) =>
  Effect.gen(function*() {
    const s = yield* pool.stats
    assert.strictEqual(s.total, t.open().length, "stats.total matches the driver's open connections")
    assert.strictEqual(s.pending, 0)
    return s
  })

/** Borrows once and returns it: one idle connection, checked now. */
const warm = (pool: ConnectionPool.ConnectionPool<unknown>) => pool.withConnection(() => Effect.void)

describe("one deadline for the whole acquire", () => {
  it.scoped("a slow connect fails the caller in the connecting phase at acquireTimeout, not connectTimeout", () =>
    Effect.gen(function*() {
      const t = makeDriver({ connectDelay: "10 seconds" })
      const options = { driver: t.driver, acquireTimeout: "2 seconds", connectTimeout: "1 minute" } as const
      const pool = yield* ConnectionPool.make(options)
      const fiber = yield* Effect.fork(Effect.flip(pool.withConnection(() => Effect.void)))
      yield* adjust("1999 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* adjust("1 millis")
      const error = timeoutOf(yield* Fiber.join(fiber))
      assert.deepStrictEqual(phases(error), {
        phase: "connecting",
        limit: "acquireTimeout",
        waited: 2000,
        waitingMs: 0,
        connectingMs: 2000,
        validatingMs: 0
      })
      assert.include(error.message, "timed out after 2s waiting for a new connection to open (acquireTimeout 2s;")
      assert.include(error.message, "waiting 0ms, connecting 2s, validating 0ms")
      // the connect was not abandoned: the pool adopts its connection as idle
      yield* adjust("8 seconds")
      const s = yield* assertNoLeak(pool, t)
      assert.deepStrictEqual([s.total, s.idle, s.timeouts], [1, 1, 1])
    }))

  it.scoped("tryGet's own connect is bounded by acquireTimeout too; its connection is kept when it opens", () =>
    Effect.gen(function*() {
      const t = makeDriver({ connectDelay: "10 seconds" })
      const options = { driver: t.driver, acquireTimeout: "2 seconds", connectTimeout: "1 minute" } as const
      const pool = yield* ConnectionPool.make(options)
      const fiber = yield* Effect.fork(Effect.flip(pool.withConnectionTry(() => Effect.void)))
      yield* adjust("2 seconds")
      const error = timeoutOf(yield* Fiber.join(fiber))
      assert.deepStrictEqual([error.phase, error.limit, error.connectingMs], ["connecting", "acquireTimeout", 2000])
      yield* adjust("8 seconds")
      const s = yield* assertNoLeak(pool, t)
      assert.deepStrictEqual([s.total, s.idle, s.timeouts], [1, 1, 1])
    }))

  it.scoped("a validation still running at the deadline fails the caller in the validating phase", () =>
    Effect.gen(function*() {
      const t = makeDriver({ validateDelay: "never" })
      const pool = yield* ConnectionPool.make({
        driver: t.driver,
        acquireTimeout: "1 second",
        validationTimeout: "5 seconds",
        validationBypass: "100 millis"
      })
      yield* warm(pool) // a new connection is not validated
      yield* adjust("200 millis")
      const fiber = yield* Effect.fork(Effect.flip(pool.withConnection(() => Effect.void)))
      yield* adjust("999 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* adjust("1 millis")
      const error = timeoutOf(yield* Fiber.join(fiber))
      assert.deepStrictEqual(phases(error), {
        phase: "validating",
        limit: "acquireTimeout",
        waited: 1000,
        waitingMs: 0,
        connectingMs: 0,
        validatingMs: 1000
      })
      assert.include(error.message, "timed out after 1s validating a connection (acquireTimeout 1s; waiting 0ms")
      // cut short mid-check, its state is unknown: closed
      const s = yield* assertNoLeak(pool, t)
      assert.deepStrictEqual([s.total, s.timeouts, t.validations()], [0, 1, 1])
    }))

  it.scoped("a validation past validationTimeout within the deadline closes the connection and opens another", () =>
    Effect.gen(function*() {
      const t = makeDriver({ validateDelay: "never" })
      const pool = yield* ConnectionPool.make({
        driver: t.driver,
        acquireTimeout: "5 seconds",
        validationTimeout: "1 second",
        validationBypass: "100 millis"
      })
      yield* warm(pool)
      yield* adjust("200 millis")
      const fiber = yield* Effect.fork(pool.withConnection((conn) => Effect.succeed(conn.id)))
      yield* adjust("1 second")
      assert.strictEqual(yield* Fiber.join(fiber), 2)
      const s = yield* assertNoLeak(pool, t)
      assert.deepStrictEqual([s.total, s.validationFailures, s.timeouts], [1, 1, 0])
    }))

  it.scoped("a retry after a broken connection keeps the caller's deadline: validating, then connecting", () =>
    Effect.gen(function*() {
      const t = makeDriver({ connectDelay: "10 seconds", validateDelay: "never" })
      const pool = yield* ConnectionPool.make({
        driver: t.driver,
        acquireTimeout: "2 seconds",
        connectTimeout: "1 minute",
        validationTimeout: "1500 millis",
        validationBypass: "100 millis",
        minSize: 1
      })
      yield* adjust("10 seconds") // minSize: opened in the background
      assert.strictEqual((yield* pool.stats).idle, 1)
      yield* adjust("1 second")
      const fiber = yield* Effect.fork(Effect.flip(pool.withConnection(() => Effect.void)))
      yield* adjust("1500 millis") // the check times out: closed, and a connect starts for the caller
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* adjust("500 millis") // its own deadline, not a new one
      const error = timeoutOf(yield* Fiber.join(fiber))
      assert.deepStrictEqual(phases(error), {
        phase: "connecting",
        limit: "acquireTimeout",
        waited: 2000,
        waitingMs: 0,
        connectingMs: 500,
        validatingMs: 1500
      })
      yield* adjust("10 seconds") // the connect it started is kept
      const s = yield* assertNoLeak(pool, t)
      assert.deepStrictEqual([s.total, s.idle, s.validationFailures, s.timeouts], [1, 1, 1, 1])
    }))

  it.scoped("a caller whose connection failed its check keeps its place ahead of callers that came after it", () =>
    Effect.gen(function*() {
      const t = makeDriver({ connectDelay: "10 millis", validateDelay: "100 millis" })
      const pool = yield* ConnectionPool.make({
        driver: t.driver,
        maxSize: 2,
        validationBypass: "50 millis",
        shutdownTimeout: 0
      })
      const holder = yield* hold(pool)
      const w = yield* Effect.fork(warm(pool))
      yield* adjust("10 millis")
      yield* Deferred.await(holder.got)
      yield* Fiber.join(w)
      yield* adjust("60 millis")
      t.opened[1].broken = true // the idle one
      const older = yield* hold(pool)
      yield* adjust("50 millis") // validating it
      const newer = yield* hold(pool)
      yield* adjust("50 millis") // the check fails: the older caller goes back to the head of the queue
      yield* adjust("10 millis") // a connect opens the next connection: to the older caller
      assert.strictEqual((yield* Deferred.await(older.got)).id, 3)
      assert.isFalse(yield* Deferred.isDone(newer.got))
      yield* holder.release
      assert.strictEqual((yield* Deferred.await(newer.got)).id, 1)
      yield* Effect.forEach([older, newer], (h) => Effect.zipRight(h.release, Fiber.join(h.fiber)))
      yield* assertNoLeak(pool, t)
    }))

  it.scoped("validationBypass 0: a handoff validated past the deadline fails in the validating phase", () =>
    Effect.gen(function*() {
      const t = makeDriver({ validateDelay: "never" })
      const pool = yield* ConnectionPool.make({
        driver: t.driver,
        maxSize: 1,
        acquireTimeout: "1 second",
        validationBypass: 0,
        shutdownTimeout: 0
      })
      const holder = yield* hold(pool)
      yield* Deferred.await(holder.got)
      const fiber = yield* Effect.fork(Effect.flip(pool.withConnection(() => Effect.void)))
      yield* adjust("400 millis")
      yield* holder.release // handed straight to the waiter, which validates it
      yield* adjust("600 millis")
      const error = timeoutOf(yield* Fiber.join(fiber))
      assert.deepStrictEqual(phases(error), {
        phase: "validating",
        limit: "acquireTimeout",
        waited: 1000,
        waitingMs: 400,
        connectingMs: 0,
        validatingMs: 600
      })
      const s = yield* assertNoLeak(pool, t)
      assert.deepStrictEqual([s.total, s.acquired, s.timeouts], [0, 1, 1]) // only the holder's borrow counts
    }))
})

describe("a caller's own Effect.timeout is respected by every phase", () => {
  it.scoped("leaving during a connect: the connection opens for the pool, idle, and is counted", () =>
    Effect.gen(function*() {
      const t = makeDriver({ connectDelay: "5 seconds" })
      const pool = yield* ConnectionPool.make({ driver: t.driver })
      const fiber = yield* Effect.fork(Effect.exit(Effect.timeout(pool.withConnection(() => Effect.void), "1 second")))
      yield* adjust("1 second")
      const exit = yield* Fiber.join(fiber)
      assert.isTrue(Exit.isFailure(exit) && Exit.causeOption(exit).pipe(Option.isSome))
      let s = yield* pool.stats
      assert.deepStrictEqual([s.pending, s.waiting, s.total, s.timeouts], [1, 0, 0, 0]) // the caller's, not ours
      yield* adjust("4 seconds")
      s = yield* assertNoLeak(pool, t)
      assert.deepStrictEqual([s.total, s.idle, s.inUse, s.acquired], [1, 1, 0, 0])
      assert.strictEqual(yield* pool.withConnection((conn) => Effect.succeed(conn.id)), 1) // reused, not reopened
      assert.strictEqual(t.attempts(), 1)
    }))

  it.scoped("leaving during a connect while another caller waits: that caller gets the connection", () =>
    Effect.gen(function*() {
      const t = makeDriver({ connectDelay: "5 seconds" })
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
      const leaver = yield* Effect.fork(Effect.exit(Effect.timeout(pool.withConnection(() => Effect.void), "1 second")))
      yield* adjust("500 millis")
      const stayer = yield* Effect.fork(pool.withConnection((conn) => Effect.succeed(conn.id)))
      yield* adjust("500 millis")
      assert.isTrue(Exit.isFailure(yield* Fiber.join(leaver)))
      yield* adjust("4 seconds")
      assert.strictEqual(yield* Fiber.join(stayer), 1)
      const s = yield* assertNoLeak(pool, t)
      assert.deepStrictEqual([s.total, s.idle, s.acquired, t.attempts()], [1, 1, 1, 1])
    }))

  it.scoped("leaving a tryGet during its connect: the connection is kept", () =>
    Effect.gen(function*() {
      const t = makeDriver({ connectDelay: "5 seconds" })
      const pool = yield* ConnectionPool.make({ driver: t.driver })
      const borrow = pool.withConnectionTry(() => Effect.void)
      const fiber = yield* Effect.fork(Effect.exit(Effect.timeout(borrow, "1 second")))
      yield* adjust("1 second")
      assert.isTrue(Exit.isFailure(yield* Fiber.join(fiber)))
      yield* adjust("4 seconds")
      const s = yield* assertNoLeak(pool, t)
      assert.deepStrictEqual([s.total, s.idle, s.timeouts], [1, 1, 0])
      // its deadline timer went with it: nothing times out later
      yield* adjust("1 minute")
      assert.strictEqual((yield* pool.stats).timeouts, 0)
    }))

  it.scoped("leaving during a validation: the half-checked connection is closed, exactly once", () =>
    Effect.gen(function*() {
      const t = makeDriver({ validateDelay: "never" })
      const pool = yield* ConnectionPool.make({ driver: t.driver, validationBypass: "100 millis" })
      yield* warm(pool)
      yield* adjust("200 millis")
      const fiber = yield* Effect.fork(Effect.exit(Effect.timeout(pool.withConnection(() => Effect.void), "1 second")))
      yield* adjust("1 second")
      assert.isTrue(Exit.isFailure(yield* Fiber.join(fiber)))
      const s = yield* assertNoLeak(pool, t)
      assert.deepStrictEqual([s.total, s.timeouts, t.opened[0].closes], [0, 0, 1])
    }))

  it.scoped("leaving while requeued after a broken connection: out of the queue, its timer stopped", () =>
    Effect.gen(function*() {
      const t = makeDriver({ connectDelay: "10 seconds", validateDelay: "never" })
      const pool = yield* ConnectionPool.make({
        driver: t.driver,
        acquireTimeout: "30 seconds",
        validationTimeout: "1 second",
        validationBypass: "100 millis"
      })
      const first = yield* Effect.fork(warm(pool))
      yield* adjust("10 seconds")
      yield* Fiber.join(first)
      yield* adjust("1 second")
      const fiber = yield* Effect.fork(Effect.exit(Effect.timeout(pool.withConnection(() => Effect.void), "3 seconds")))
      yield* adjust("3 seconds") // 1 s validating, then queued first for a connect
      assert.isTrue(Exit.isFailure(yield* Fiber.join(fiber)))
      assert.strictEqual((yield* pool.stats).waiting, 0)
      yield* adjust("1 minute")
      const s = yield* assertNoLeak(pool, t)
      assert.deepStrictEqual([s.total, s.idle, s.timeouts], [1, 1, 0])
    }))
})

/** When an acquire began, and when it got a connection or failed (with what). */
interface End {
  readonly start: number
  readonly end: number
  readonly error?: PoolError.PoolError
}

describe("one deadline, under random schedules", () => {
  const scenario = fc.record({
    maxSize: fc.integer({ min: 1, max: 3 }),
    acquireTimeout: fc.integer({ min: 200, max: 3_000 }),
    connectDelay: fc.integer({ min: 0, max: 3_000 }),
    validateDelay: fc.integer({ min: 0, max: 3_000 }),
    validationTimeout: fc.integer({ min: 50, max: 2_000 }),
    validationBypass: fc.constantFrom(0, 100),
    callers: fc.array(
      fc.record({ at: fc.nat(3_000), hold: fc.nat(1_500), tryGet: fc.boolean(), leaveAfter: fc.option(fc.nat(2_000)) }),
      { minLength: 1, maxLength: 12 }
    ),
    breaks: fc.array(fc.record({ at: fc.nat(50).map((n) => n * 100), k: fc.nat(5) }), { maxLength: 4 })
  })

  it.effect("every acquire ends by its deadline, PoolTimeout's phases add up, and nothing leaks", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(scenario, (sc) =>
          Effect.runPromise(Effect.scoped(Effect.gen(function*() {
            const t = makeDriver({ connectDelay: sc.connectDelay, validateDelay: sc.validateDelay })
            const pool = yield* ConnectionPool.make({
              driver: t.driver,
              maxSize: sc.maxSize,
              acquireTimeout: sc.acquireTimeout,
              connectTimeout: "1 minute",
              validationTimeout: sc.validationTimeout,
              validationBypass: sc.validationBypass,
              shutdownTimeout: 0
            })
            const ends: Array<End> = []
            const fibers = yield* Effect.forEach(sc.callers, (c) =>
              Effect.fork(Effect.gen(function*() {
                yield* Effect.sleep(c.at)
                const start = yield* Clock.currentTimeMillis
                const use = (conn: unknown) =>
                  Effect.zipRight(
                    Effect.flatMap(Clock.currentTimeMillis, (end) => Effect.sync(() => ends.push({ start, end }))),
                    Effect.as(Effect.sleep(c.hold), conn)
                  )
                const borrow = c.tryGet ? pool.withConnectionTry(use) : pool.withConnection(use)
                const left = c.leaveAfter === null ? borrow : Effect.timeout(borrow, c.leaveAfter)
                const exit = yield* Effect.exit(left)
                if (exit._tag === "Failure" && exit.cause._tag === "Fail" && isPoolError(exit.cause.error)) {
                  ends.push({ start, end: yield* Clock.currentTimeMillis, error: exit.cause.error })
                }
              })))
            for (let now = 0; now < 9_000; now += 100) {
              for (const b of sc.breaks) if (b.at === now && t.opened[b.k] !== undefined) t.opened[b.k].broken = true
              yield* TestClock.adjust("100 millis")
              yield* settle
            }
            yield* Effect.forEach(fibers, Fiber.join, { discard: true })
            for (const e of ends) {
              const late = `an acquire ended past its deadline: ${e.error?.message}`
              assert.isAtMost(e.end - e.start, sc.acquireTimeout, late)
              if (e.error?._tag === "PoolTimeout") {
                const p = e.error
                assert.strictEqual(p.waitingMs + p.connectingMs + p.validatingMs, Duration.toMillis(p.waited))
                assert.isTrue(p.waitingMs >= 0 && p.connectingMs >= 0 && p.validatingMs >= 0)
              }
            }
            yield* TestClock.adjust("5 minutes")
            yield* settle
            const s = yield* pool.stats
            assert.deepStrictEqual([s.inUse, s.waiting, s.pending], [0, 0, 0])
            assert.strictEqual(s.total, t.open().length)
          })).pipe(Effect.provide(TestContext.TestContext)))
        ),
        { numRuns: 20 }
      )
    ), 120_000)
})
