import { assert, describe, it } from "@effect/vitest"
import { Cause, Config, ConfigProvider, Deferred, Duration, Effect, Exit, Fiber, Layer } from "effect"
import { ConnectionPool, OptionCheck, PoolError, PoolStats } from "../src/index.js"
import { adjust, type Conn, eventually, hold, makeDriver, settle } from "./utils.js"

/** A server that takes at most `limit` connections and refuses more with "too many connections" (53300). */
const limitedServer = (limit: number) => {
  const t = makeDriver()
  let room = limit
  let refused = 0
  const driver: ConnectionPool.Driver<Conn> = {
    ...t.driver,
    connect: Effect.suspend(() => {
      if (t.open().length >= room) {
        refused++
        return Effect.fail(
          new PoolError.ConnectionError({ reason: "sorry, too many clients already", atCapacity: true })
        )
      }
      return t.driver.connect
    })
  }
  return {
    ...t,
    driver,
    refused: () => refused,
    setRoom: (n: number) => {
      room = n
    }
  }
}

describe("faults", () => {
  describe("a callback that throws", () => {
    const thrower = (_conn: Conn): Effect.Effect<void> => {
      throw new Error("x")
    }
    it.scoped("is a defect that closes its connection, through withConnection, withConnectionTry and a tag", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        class Db extends ConnectionPool.Tag("test/Throws")<Db, Conn>() {}
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1, acquireTimeout: "1 second" })
        const viaTag = Db.withConnection(thrower).pipe(Effect.provideService(Db, pool))
        for (const borrow of [pool.withConnection(thrower), pool.withConnectionTry(thrower), viaTag]) {
          const exit = yield* Effect.exit(borrow)
          assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause))
          const s = yield* pool.stats
          assert.deepStrictEqual([s.inUse, s.total], [0, 0])
        }
        assert.strictEqual(t.opened.length, 3)
        assert.isTrue(t.opened.every((c) => c.closes === 1))
        assert.strictEqual(yield* pool.withConnection((c) => Effect.succeed(c.id)), 4) // nobody waits for a leak
      }))
  })

  describe("PoolTimeout", () => {
    it.scoped("names acquireTimeout when the caller's deadline passes while a long connect runs", () =>
      Effect.gen(function*() {
        const t = makeDriver({ connectDelay: "never" })
        const options = { driver: t.driver, acquireTimeout: "2 seconds", connectTimeout: "1 minute" } as const
        const pool = yield* ConnectionPool.make(options)
        const fiber = yield* Effect.fork(Effect.flip(pool.withConnection(() => Effect.void)))
        yield* adjust("2 seconds")
        const error = yield* Fiber.join(fiber)
        assert.strictEqual(error._tag, "PoolTimeout")
        if (error._tag !== "PoolTimeout") return
        assert.strictEqual(error.phase, "connecting")
        assert.strictEqual(error.limit, "acquireTimeout")
        assert.strictEqual(Duration.toMillis(error.timeout), 2000)
        assert.include(error.message, "timed out after 2s waiting for a new connection to open (acquireTimeout 2s;")
      }))

    it.scoped("names connectTimeout when one connect runs past it", () =>
      Effect.gen(function*() {
        const t = makeDriver({ connectDelay: "never" })
        const options = { driver: t.driver, acquireTimeout: "1 minute", connectTimeout: "3 seconds" } as const
        const pool = yield* ConnectionPool.make(options)
        const fiber = yield* Effect.fork(Effect.flip(pool.withConnection(() => Effect.void)))
        yield* adjust("3 seconds")
        const error = yield* Fiber.join(fiber)
        assert.isTrue(error._tag === "PoolTimeout" && error.limit === "connectTimeout")
        assert.include(error.message, "(connectTimeout 3s;")
      }))
  })

  describe("durations", () => {
    const cases: ReadonlyArray<readonly [ConnectionPool.PoolConfig, string, string]> = [
      [{ validationBypass: -1 }, "validationBypass", "-1"],
      [{ shutdownTimeout: -1 }, "shutdownTimeout", "-1"],
      [{ shutdownTimeout: Number.NaN }, "shutdownTimeout", "NaN"],
      [{ validationBypass: "-5 seconds" }, "validationBypass", `"-5 seconds"`],
      [{ shutdownTimeout: [-1, 0] }, "shutdownTimeout", "[-1, 0]"],
      [{ idleTimeout: -1n }, "idleTimeout", "-1"]
    ]
    for (const [options, option, shown] of cases) {
      it.scoped(`${option} = ${shown} is an InvalidConfig that shows what was written`, () =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(ConnectionPool.make({ driver: makeDriver().driver, ...options }))
          assert.strictEqual(error.option, option)
          assert.include(error.message, `invalid pool option ${option} = ${shown}:`)
        }))
    }

    it.effect("a duration read with OptionCheck.durationConfig is checked as written", () =>
      Effect.gen(function*() {
        class Db extends ConnectionPool.Tag("test/ConfigText")<Db, Conn>() {}
        const layer = Db.layerConfig(makeDriver().driver, { validationBypass: OptionCheck.durationConfig("BYPASS") })
        const build = (text: string) =>
          Layer.build(layer).pipe(
            Effect.scoped,
            Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["BYPASS", text]])))
          )
        const error = yield* Effect.flip(build("-1 seconds"))
        assert.include(error.message, `invalid pool option validationBypass = "-1 seconds": must not be negative`)
        yield* build("250 millis") // a good one goes through
      }))

    it.effect("a Duration from Config that is rejected is shown as a duration", () =>
      Effect.gen(function*() {
        class Db extends ConnectionPool.Tag("test/ConfigDuration")<Db, Conn>() {}
        const layer = Db.layerConfig(makeDriver().driver, { acquireTimeout: Config.duration("ACQUIRE") })
        const provider = ConfigProvider.fromMap(new Map([["ACQUIRE", "0 seconds"]]))
        const error = yield* Effect.flip(Layer.build(layer).pipe(Effect.scoped, Effect.withConfigProvider(provider)))
        assert.strictEqual(error._tag, "InvalidConfig")
        assert.include(error.message, "invalid pool option acquireTimeout = 0: must be positive")
        assert.notInclude(error.message, "Duration(")
      }))
  })

  it.scoped("the exhaustion message counts connections in use and opening", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      let slow = false
      const driver = { ...t.driver, connect: Effect.suspend(() => slow ? Effect.never : t.driver.connect) }
      const pool = yield* ConnectionPool.make({ driver, maxSize: 2 })
      const holder = yield* hold(pool)
      yield* Deferred.await(holder.got)
      slow = true
      yield* Effect.fork(Effect.scoped(pool.tryGet)) // its connect never returns
      yield* settle
      const error = yield* Effect.flip(Effect.scoped(pool.tryGet))
      assert.strictEqual(error._tag, "PoolEmpty")
      assert.include(error.message, `pool "default" is exhausted: 1 of 2 connections in use and 1 opening`)
      yield* holder.release
    }))

  it.scoped("a tryGet whose connection opens after the pool shrank below it is told, not left waiting", () =>
    Effect.gen(function*() {
      // found by the property test (TryGet, Get, Get, Get, Resize to 2, Advance): it hung the tryGet for good
      const t = makeDriver({ connectDelay: "100 millis" })
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 2, shutdownTimeout: 0 })
      const get = yield* hold(pool)
      yield* adjust("100 millis")
      yield* Deferred.await(get.got)
      const tryGet = yield* Effect.fork(Effect.flip(Effect.scoped(pool.tryGet))) // room for one more: a connect
      yield* settle
      yield* pool.resize({ maxSize: 1 }) // ... that is now one too many
      yield* adjust("100 millis")
      const error = yield* Fiber.join(tryGet)
      assert.strictEqual(error._tag, "PoolEmpty")
      assert.deepStrictEqual([(yield* pool.stats).total, t.open().length], [1, 1])
      yield* get.release
    }))

  describe("validationBypass: 0", () => {
    it.scoped("a waiter whose handed connection fails its check keeps its place at the head of the queue", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1, validationBypass: 0 })
        const holder = yield* hold(pool)
        const conn = yield* Deferred.await(holder.got)
        const first = yield* hold(pool)
        yield* settle
        const second = yield* hold(pool)
        yield* settle
        conn.broken = true
        yield* holder.release // handed to `first`, which finds it broken: closed, and a new one opened for it
        const got = yield* Deferred.await(first.got)
        assert.strictEqual(got.id, 2)
        assert.isFalse(yield* Deferred.isDone(second.got)) // `second` did not overtake it
        assert.strictEqual((yield* pool.stats).waiting, 1)
        yield* first.release
        assert.strictEqual((yield* Deferred.await(second.got)).id, 2)
        yield* second.release
      }))

    it.scoped("validates every borrow, a connection handed straight to a waiter included", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1, validationBypass: 0 })
        const holder = yield* hold(pool)
        const conn = yield* Deferred.await(holder.got)
        const waiter = yield* Effect.fork(pool.withConnection((c) => Effect.succeed(c.id)))
        const callback = yield* Effect.fork(
          pool.withConnectionCallback<number, never>((c, done) => done(Exit.succeed(c.id)))
        )
        yield* settle
        conn.broken = true // its validate now says false
        yield* holder.release
        assert.strictEqual(yield* Fiber.join(waiter), 2) // not the broken one
        assert.strictEqual(yield* Fiber.join(callback), 2)
        assert.strictEqual(conn.closes, 1)
        const before = t.validations()
        yield* pool.withConnection(() => Effect.void)
        yield* pool.withConnection(() => Effect.void)
        assert.strictEqual(t.validations() - before, 2) // idle borrows at the same instant are checked too
        const s = yield* pool.stats
        assert.strictEqual(s.hits + s.misses, s.acquired)
      }))
  })

  describe("reuse", () => {
    const lendingOrder = (reuse: "lifo" | "fifo") =>
      Effect.gen(function*() {
        const t = makeDriver({ validate: false })
        const pool = yield* ConnectionPool.make({ driver: t.driver, reuse })
        const holders = [yield* hold(pool), yield* hold(pool), yield* hold(pool)]
        for (const h of holders) yield* Deferred.await(h.got)
        for (const h of holders) yield* h.release // returned in the order 1, 2, 3
        yield* settle
        const order: Array<number> = []
        for (let i = 0; i < 3; i++) order.push(yield* pool.withConnection((c) => Effect.succeed(c.id)))
        return order
      })

    it.scoped("lifo (default) lends the most recently returned connection", () =>
      Effect.map(lendingOrder("lifo"), (order) => assert.deepStrictEqual(order, [3, 3, 3])))

    it.scoped("fifo lends the longest idle, so every connection is used", () =>
      Effect.map(lendingOrder("fifo"), (order) => assert.deepStrictEqual(order, [1, 2, 3])))

    it.scoped("fifo keeps reaping and keepalive right", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({
          driver: t.driver,
          reuse: "fifo",
          idleTimeout: "1 minute",
          minSize: 1
        })
        const holders = [yield* hold(pool), yield* hold(pool), yield* hold(pool)]
        for (const h of holders) yield* Deferred.await(h.got)
        for (const h of holders) yield* h.release
        yield* adjust("2 minutes")
        const s = yield* pool.stats
        assert.deepStrictEqual([s.total, s.idle], [1, 1])
        assert.strictEqual(t.open().length, 1)
      }))

    it.scoped("rejects anything else with InvalidConfig", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          ConnectionPool.make({ driver: makeDriver().driver, reuse: "random" as "lifo" })
        )
        assert.strictEqual(error.option, "reuse")
      }))
  })

  describe("a server at its connection limit", () => {
    it.scoped("holds the pool at what is open; callers wait for releases instead of failing", () =>
      Effect.gen(function*() {
        const server = limitedServer(4)
        const pool = yield* ConnectionPool.make({
          driver: server.driver,
          maxSize: 20,
          acquireTimeout: "10 seconds",
          connectBackoff: "100 millis",
          connectBackoffMax: "2 seconds"
        })
        let failed = 0
        const work = pool.withConnection(() => Effect.sleep("100 millis")).pipe(
          Effect.catchAll(() => Effect.sync(() => void failed++))
        )
        const callers = yield* Effect.forEach(
          Array.from({ length: 50 }),
          () => Effect.fork(Effect.repeatN(work, 4)),
          { concurrency: "unbounded" }
        )
        for (let i = 0; i < 70; i++) yield* adjust("100 millis") // 250 uses of 100 ms on 4 connections
        for (const f of callers) yield* Fiber.join(f)
        assert.strictEqual(failed, 0)
        const s = yield* pool.stats
        assert.strictEqual(s.total, 4)
        assert.isAtMost(s.ceiling, 5)
        // one burst when the limit is found, then one try per backoff (100 ms doubling to 2 s): a few in 7 s
        assert.isAtMost(server.refused(), 16 + 8)
        assert.isFalse(s.breakerOpen) // "full" is not "down"
      }), 30_000)

    it.scoped("grows again when the server makes room", () =>
      Effect.gen(function*() {
        const server = limitedServer(2)
        const pool = yield* ConnectionPool.make({
          driver: server.driver,
          maxSize: 6,
          connectBackoff: "100 millis",
          connectBackoffMax: "1 second"
        })
        const holders = yield* Effect.forEach(Array.from({ length: 6 }), () => hold(pool))
        yield* settle
        assert.strictEqual((yield* pool.stats).total, 2)
        server.setRoom(6)
        yield* adjust("2 seconds")
        for (let i = 0; i < 10; i++) yield* adjust("1 second")
        for (const h of holders) yield* Deferred.await(h.got)
        const s = yield* pool.stats
        assert.deepStrictEqual([s.total, s.inUse, s.waiting, s.ceiling], [6, 6, 0, 6])
        for (const h of holders) yield* h.release
      }))

    it.scoped("with nothing open, the refusal reaches the caller as ConnectionError", () =>
      Effect.gen(function*() {
        const server = limitedServer(0)
        const pool = yield* ConnectionPool.make({ driver: server.driver })
        const error = yield* Effect.flip(pool.withConnection(() => Effect.void))
        assert.isTrue(error._tag === "ConnectionError" && error.atCapacity === true)
      }))
  })

  describe("circuit breaker", () => {
    it.scoped("opens after breakerThreshold failures in a row: 1,000 callers fail at once, not a connect each", () =>
      Effect.gen(function*() {
        const t = makeDriver({ down: true })
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 10, breakerThreshold: 5 })
        const errors = yield* Effect.forEach(
          Array.from({ length: 1000 }),
          () => Effect.fork(Effect.flip(pool.withConnection(() => Effect.void))),
          { concurrency: "unbounded" }
        ).pipe(Effect.flatMap((fibers) => Effect.forEach(fibers, Fiber.join)))
        assert.strictEqual(errors.length, 1000)
        assert.isTrue(errors.every((e) => e._tag === "ConnectionError"))
        // until it opens, each failure starts the next caller's connect: maxSize + threshold at most, not 1,000
        assert.isAtMost(t.attempts(), 15)
        const s = yield* eventually(pool.stats, (s) => s.pending === 0) // connects in flight when it opened
        assert.isTrue(s.breakerOpen)
        assert.deepStrictEqual([s.total, s.waiting], [0, 0])
        const attempts = t.attempts()
        const late = yield* Effect.flip(pool.withConnection(() => Effect.void))
        assert.strictEqual(t.attempts(), attempts) // turned away without a connect
        assert.isTrue(late._tag === "ConnectionError" && late.breaker !== undefined)
        assert.match(
          late.message,
          new RegExp(
            "circuit breaker open since 1970-01-01T00:00:00\\.000Z after \\d+ connect failures in a row, " +
              "next probe in \\d+ms; last: connect to test:1 refused"
          )
        )
        assert.include(PoolStats.format(s), "breaker=open")
      }))

    it.scoped("probes one at a time with backoff, and the first probe that connects closes it", () =>
      Effect.gen(function*() {
        const t = makeDriver({ down: true })
        const pool = yield* ConnectionPool.make({
          driver: t.driver,
          breakerThreshold: 2,
          breakerBackoff: "1 second",
          breakerBackoffMax: "4 seconds"
        })
        yield* Effect.flip(pool.withConnection(() => Effect.void))
        yield* Effect.flip(pool.withConnection(() => Effect.void))
        assert.isTrue((yield* pool.stats).breakerOpen)
        const before = t.attempts()
        for (let i = 0; i < 60; i++) yield* adjust("1 second")
        const probes = t.attempts() - before
        // 0.5-1 s, then 1-2, 2-4, then 2-4 s apart: between 15 and 31 in a minute, one at a time
        assert.isAtLeast(probes, 14)
        assert.isAtMost(probes, 31)
        t.setDown(false)
        yield* adjust("4 seconds") // within one backoff period
        const s = yield* pool.stats
        assert.isFalse(s.breakerOpen)
        assert.strictEqual(s.consecutiveConnectFailures, 0)
        assert.strictEqual(s.idle, 1) // the probe's connection, ready for the next caller
        assert.strictEqual(yield* pool.withConnection((c) => Effect.succeed(c.id)), 1)
      }))

    it.scoped("while open, idle connections are still lent, and waiters left with nothing to wait for fail", () =>
      Effect.gen(function*() {
        const t = makeDriver({ validate: false })
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 2, breakerThreshold: 1 })
        const holder = yield* hold(pool)
        const conn = yield* Deferred.await(holder.got)
        t.setDown(true)
        yield* Effect.flip(pool.withConnectionTry(() => Effect.void)) // opens the breaker
        assert.isTrue((yield* pool.stats).breakerOpen)
        const waiter = yield* Effect.fork(Effect.flip(pool.withConnection(() => Effect.void)))
        yield* settle
        assert.strictEqual((yield* pool.stats).waiting, 1) // a connection is open: it may come back
        yield* pool.invalidate(conn)
        yield* holder.release // ... but it does not: the waiter is told at once
        const error = yield* Fiber.join(waiter)
        assert.isTrue(error._tag === "ConnectionError" && error.breaker !== undefined)
      }))

    it.scoped("warm-up waits for the probe while open, and refills once it gets through", () =>
      Effect.gen(function*() {
        const t = makeDriver({ down: true })
        const pool = yield* ConnectionPool.make({ driver: t.driver, minSize: 3, breakerThreshold: 3 })
        for (let i = 0; i < 20; i++) yield* adjust("1 second")
        assert.isTrue((yield* pool.stats).breakerOpen)
        t.setDown(false)
        yield* adjust("5 seconds")
        yield* eventually(pool.stats, (s) => s.idle === 3)
      }))

    it.scoped("the driver's own error stays the cause, through retries and the breaker", () =>
      Effect.gen(function*() {
        const t = makeDriver({ down: true })
        const pool = yield* ConnectionPool.make({
          driver: t.driver,
          breakerThreshold: 1,
          connectRetries: 1,
          connectBackoff: "1 second"
        })
        const fiber = yield* Effect.fork(Effect.flip(pool.withConnection(() => Effect.void)))
        yield* adjust("1 second")
        const first = yield* Fiber.join(fiber)
        const late = yield* Effect.flip(pool.withConnection(() => Effect.void))
        for (const e of [first, late]) {
          assert.isTrue(e._tag === "ConnectionError" && e.cause instanceof Error && e.cause.message === "ECONNREFUSED")
        }
      }))

    it.scoped("a shutdown does not wait for a probe that hangs: it is interrupted", () =>
      Effect.gen(function*() {
        let hang = false
        const t = makeDriver({ down: true })
        const driver = { ...t.driver, connect: Effect.suspend(() => hang ? Effect.never : t.driver.connect) }
        const pool = yield* ConnectionPool.make({ driver, breakerThreshold: 1, connectTimeout: "1 minute" })
        yield* Effect.flip(pool.withConnection(() => Effect.void)) // opens the breaker
        hang = true
        yield* adjust("1 second") // the probe starts, and hangs
        assert.strictEqual((yield* pool.stats).pending, 1)
        const done = yield* Effect.fork(pool.shutdown())
        yield* settle // no clock movement: not connectTimeout, not shutdownTimeout
        assert.isTrue((yield* Fiber.poll(done))._tag === "Some", "shutdown finished at once")
        assert.strictEqual((yield* pool.stats).pending, 0)
      }))

    it.scoped("breakerThreshold: 0 turns it off", () =>
      Effect.gen(function*() {
        const t = makeDriver({ down: true })
        const pool = yield* ConnectionPool.make({ driver: t.driver, breakerThreshold: 0 })
        for (let i = 0; i < 20; i++) yield* Effect.flip(pool.withConnection(() => Effect.void))
        assert.strictEqual(t.attempts(), 20)
        assert.isFalse((yield* pool.stats).breakerOpen)
      }))
  })
})
