import { assert, describe, it } from "@effect/vitest"
import { Cause, Config, ConfigProvider, Deferred, Duration, Effect, Exit, Fiber, Layer, Option, Ref } from "effect"
import { ConnectionPool } from "../src/index.js"
import { adjust, type Conn, eventually, hold, makeDriver, settle } from "./utils.js"

const stats = <A>(pool: ConnectionPool.ConnectionPool<A>) => pool.stats

describe("ConnectionPool", () => {
  describe("borrowing", () => {
    it.scoped("withConnection lends a connection and reuses it", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver })
        const first = yield* pool.withConnection((conn) => Effect.succeed(conn.id))
        const second = yield* ConnectionPool.withConnection(pool, (conn) => Effect.succeed(conn.id))
        const third = yield* pool.pipe(ConnectionPool.withConnection((conn) => Effect.succeed(conn.id)))
        assert.deepStrictEqual([first, second, third], [1, 1, 1])
        const s = yield* stats(pool)
        assert.strictEqual(s.created, 1)
        assert.strictEqual(s.acquired, 3)
        assert.strictEqual(s.misses, 1)
        assert.strictEqual(s.hits, 2)
        assert.deepStrictEqual([s.total, s.idle, s.inUse], [1, 1, 0])
      }))

    it.scoped("get holds the connection until the caller's scope closes", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver })
        const during = yield* Effect.scoped(Effect.zipRight(pool.get, stats(pool)))
        assert.deepStrictEqual([during.inUse, during.idle], [1, 0])
        const after = yield* stats(pool)
        assert.deepStrictEqual([after.inUse, after.idle], [0, 1])
      }))

    it.scoped("never opens more than maxSize; a caller past it waits, then gets the released one", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 2 })
        const a = yield* hold(pool)
        const b = yield* hold(pool)
        const c = yield* hold(pool)
        yield* settle
        const s = yield* stats(pool)
        assert.deepStrictEqual([s.total, s.inUse, s.waiting], [2, 2, 1])
        assert.strictEqual(t.opened.length, 2)
        const aConn = yield* Deferred.await(a.got)
        yield* a.release
        const cConn = yield* Deferred.await(c.got)
        assert.strictEqual(cConn, aConn)
        yield* b.release
        yield* c.release
        yield* settle
        assert.strictEqual((yield* stats(pool)).idle, 2)
      }))

    it.scoped("waiters are served in arrival order", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
        const holder = yield* hold(pool)
        yield* settle
        const served = yield* Ref.make<Array<number>>([])
        const fibers = []
        for (let i = 0; i < 5; i++) {
          fibers.push(yield* Effect.fork(pool.withConnection(() => Ref.update(served, (xs) => [...xs, i]))))
          yield* settle
        }
        yield* holder.release
        yield* Effect.forEach(fibers, Fiber.join)
        assert.deepStrictEqual(yield* Ref.get(served), [0, 1, 2, 3, 4])
      }))

    it.scoped("a newcomer does not barge past waiters", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
        const holder = yield* hold(pool)
        yield* settle
        const waiter = yield* hold(pool)
        yield* settle
        // release and, in the same breath, ask again: the waiter must win
        yield* holder.release
        const late = yield* hold(pool)
        yield* settle
        assert.isTrue(Option.isSome(yield* Deferred.poll(waiter.got)))
        assert.isTrue(Option.isNone(yield* Deferred.poll(late.got)))
        yield* waiter.release
        yield* Deferred.await(late.got)
        yield* late.release
      }))

    it.scoped("a typed failure inside withConnection returns the connection to the pool", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver })
        const exit = yield* Effect.exit(pool.withConnection(() => Effect.fail("boom" as const)))
        assert.deepStrictEqual(exit, Exit.fail("boom"))
        const s = yield* stats(pool)
        assert.deepStrictEqual([s.idle, s.destroyed], [1, 0])
        assert.strictEqual(yield* pool.withConnection((c) => Effect.succeed(c.id)), 1)
      }))

    it.scoped("a defect inside withConnection closes the connection instead of reusing it", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver })
        const exit = yield* Effect.exit(pool.withConnection(() => Effect.die("kaput")))
        assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause))
        assert.strictEqual(t.opened[0].closes, 1)
        const s = yield* stats(pool)
        assert.deepStrictEqual([s.total, s.destroyed], [0, 1])
        assert.strictEqual(yield* pool.withConnection((c) => Effect.succeed(c.id)), 2)
      }))

    it.scoped("a user interrupted mid-use has its connection closed", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver })
        const started = yield* Deferred.make<void>()
        const fiber = yield* Effect.fork(pool.withConnection(() => Effect.zipRight(Deferred.succeed(started, void 0), Effect.never)))
        yield* Deferred.await(started)
        yield* Fiber.interrupt(fiber)
        assert.strictEqual(t.opened[0].closes, 1)
        assert.strictEqual((yield* stats(pool)).total, 0)
      }))

    it.scoped("get's scope closed by interruption closes the connection", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver })
        const h = yield* hold(pool)
        yield* Deferred.await(h.got)
        yield* Fiber.interrupt(h.fiber)
        assert.strictEqual(t.opened[0].closes, 1)
      }))

    it.scoped("a connection the driver says is not reusable is closed when it comes back", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: { ...t.driver, reusable: (conn) => !conn.broken } })
        yield* pool.withConnection(() => Effect.void)
        assert.strictEqual(t.opened[0].closes, 0)
        yield* pool.withConnection((conn) => Effect.sync(() => conn.broken = true))
        assert.strictEqual(t.opened[0].closes, 1)
        assert.strictEqual((yield* pool.stats).total, 0)
        // one that breaks while idle is not lent, even inside the validation bypass window
        yield* pool.withConnection(() => Effect.void)
        t.opened[1].broken = true
        assert.strictEqual(yield* pool.withConnection((c) => Effect.succeed(c.id)), 3)
        assert.strictEqual(t.opened[1].closes, 1)
      }))
  })

  describe("tryGet", () => {
    it.scoped("opens a connection when there is room, and fails PoolEmpty at maxSize", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1, name: "tiny" })
        const id = yield* pool.withConnectionTry((c) => Effect.succeed(c.id))
        assert.strictEqual(id, 1)
        const holder = yield* hold(pool)
        yield* Deferred.await(holder.got)
        const error = yield* Effect.flip(Effect.scoped(pool.tryGet))
        assert.strictEqual(error._tag, "PoolEmpty")
        assert.include(error.message, `pool "tiny" is exhausted`)
        const viaCombinator = yield* Effect.flip(ConnectionPool.withConnectionTry(pool, () => Effect.void))
        assert.strictEqual(viaCombinator._tag, "PoolEmpty")
        assert.strictEqual((yield* stats(pool)).emptyFailures, 2)
        yield* holder.release
      }))

    it.scoped("does not wait even while others wait", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
        const holder = yield* hold(pool)
        const waiter = yield* hold(pool)
        yield* settle
        const error = yield* Effect.flip(Effect.scoped(ConnectionPool.tryGet(pool)))
        assert.strictEqual(error._tag, "PoolEmpty")
        yield* holder.release
        yield* Deferred.await(waiter.got)
        yield* waiter.release
      }))
  })

  describe("timeouts", () => {
    it.scoped("a waiter fails with PoolTimeout after acquireTimeout, with the phase and a snapshot", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1, acquireTimeout: "5 seconds" })
        const holder = yield* hold(pool)
        const waiter = yield* Effect.fork(Effect.flip(Effect.scoped(pool.get)))
        yield* adjust("4999 millis")
        assert.isTrue(Option.isNone(yield* Fiber.poll(waiter)))
        yield* adjust("1 millis")
        const error = yield* Fiber.join(waiter)
        assert.strictEqual(error._tag, "PoolTimeout")
        if (error._tag !== "PoolTimeout") return
        assert.strictEqual(error.phase, "waiting")
        assert.strictEqual(Duration.toMillis(error.waited), 5000)
        assert.strictEqual(error.stats.inUse, 1)
        assert.include(error.message, "timed out after 5s waiting for a connection to be released")
        const s = yield* stats(pool)
        assert.deepStrictEqual([s.timeouts, s.waiting], [1, 0])
        yield* holder.release
        yield* settle
        assert.strictEqual((yield* stats(pool)).idle, 1)
      }))

    it.scoped("waiters time out one by one, each after its own acquireTimeout", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1, acquireTimeout: "10 seconds" })
        const holder = yield* hold(pool)
        yield* settle
        const first = yield* Effect.fork(Effect.exit(Effect.scoped(pool.get)))
        yield* adjust("3 seconds")
        const second = yield* Effect.fork(Effect.exit(Effect.scoped(pool.get)))
        yield* adjust("7 seconds")
        assert.isTrue(Exit.isFailure(yield* Fiber.join(first)))
        assert.isTrue(Option.isNone(yield* Fiber.poll(second)))
        yield* adjust("3 seconds")
        assert.isTrue(Exit.isFailure(yield* Fiber.join(second)))
        yield* holder.release
      }))

    it.scoped("a connect that hangs past connectTimeout fails with PoolTimeout in the connecting phase", () =>
      Effect.gen(function*() {
        const t = makeDriver({ connectDelay: "never" })
        const pool = yield* ConnectionPool.make({
          driver: t.driver,
          acquireTimeout: "30 seconds",
          connectTimeout: "2 seconds"
        })
        const fiber = yield* Effect.fork(Effect.flip(pool.withConnection(() => Effect.void)))
        yield* adjust("2 seconds")
        const error = yield* Fiber.join(fiber)
        assert.strictEqual(error._tag, "PoolTimeout")
        assert.strictEqual(error._tag === "PoolTimeout" && error.phase, "connecting")
        const s = yield* stats(pool)
        assert.deepStrictEqual([s.pending, s.total, s.waiting], [0, 0, 0])
      }))

    it.scoped("a waiter whose connect is still running when acquireTimeout passes reports the connecting phase", () =>
      Effect.gen(function*() {
        const t = makeDriver({ connectDelay: "20 seconds" })
        const pool = yield* ConnectionPool.make({
          driver: t.driver,
          acquireTimeout: "5 seconds",
          connectTimeout: "30 seconds"
        })
        const fiber = yield* Effect.fork(Effect.flip(pool.withConnection(() => Effect.void)))
        yield* adjust("5 seconds")
        const error = yield* Fiber.join(fiber)
        assert.strictEqual(error._tag === "PoolTimeout" && error.phase, "connecting")
        // the connect finishes later and its connection is kept, not leaked
        yield* adjust("15 seconds")
        const s = yield* stats(pool)
        assert.deepStrictEqual([s.total, s.idle, s.pending], [1, 1, 0])
      }))
  })

  describe("invalidate, drain, resize", () => {
    it.scoped("invalidate closes an in-use connection when it is released, an idle one at once", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver })
        yield* pool.withConnection((conn) =>
          Effect.gen(function*() {
            yield* ConnectionPool.invalidate(pool, conn)
            assert.strictEqual(conn.closes, 0)
          })
        )
        assert.strictEqual(t.opened[0].closes, 1)
        yield* pool.withConnection(() => Effect.void)
        assert.strictEqual((yield* stats(pool)).idle, 1)
        yield* pool.pipe(ConnectionPool.invalidate(t.opened[1]))
        assert.strictEqual(t.opened[1].closes, 1)
        assert.deepStrictEqual([(yield* stats(pool)).total, (yield* stats(pool)).idle], [0, 0])
        // unknown connections are ignored
        yield* pool.invalidate({ id: 99, closes: 0, broken: false })
      }))

    it.scoped("drain closes idle connections and the pool stays usable", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver })
        const holder = yield* hold(pool)
        yield* Effect.all([pool.withConnection(() => Effect.void), pool.withConnection(() => Effect.void)], {
          concurrency: 2
        })
        yield* settle
        assert.strictEqual((yield* stats(pool)).idle, 2)
        yield* ConnectionPool.drain(pool)
        const s = yield* stats(pool)
        assert.deepStrictEqual([s.idle, s.inUse, s.total], [0, 1, 1])
        assert.strictEqual(t.open().length, 1)
        assert.strictEqual(yield* pool.withConnection((c) => Effect.succeed(c.id)), 4)
        yield* holder.release
      }))

    it.scoped("resize up serves waiters at once; resize down closes idle excess now and in-use excess on release", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
        const a = yield* hold(pool)
        const b = yield* hold(pool)
        yield* settle
        assert.strictEqual((yield* stats(pool)).waiting, 1)
        yield* ConnectionPool.resize(pool, { maxSize: 3 })
        yield* Deferred.await(b.got)
        const c = yield* hold(pool)
        yield* Deferred.await(c.got)
        assert.strictEqual((yield* stats(pool)).total, 3)
        yield* c.release
        yield* settle
        yield* pool.pipe(ConnectionPool.resize({ maxSize: 1 }))
        let s = yield* stats(pool)
        assert.deepStrictEqual([s.total, s.idle, s.inUse, s.maxSize], [2, 0, 2, 1])
        yield* a.release
        yield* settle
        s = yield* stats(pool)
        assert.deepStrictEqual([s.total, s.inUse], [1, 1])
        yield* b.release
        yield* settle
        s = yield* stats(pool)
        assert.deepStrictEqual([s.total, s.idle], [1, 1])
        assert.strictEqual(t.open().length, 1)
      }))

    it.scoped("resize rejects bad sizes with InvalidConfig and keeps the old ones", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 4 })
        const error = yield* Effect.flip(pool.resize({ minSize: 5 }))
        assert.strictEqual(error._tag, "InvalidConfig")
        assert.strictEqual(error.option, "minSize")
        assert.strictEqual((yield* stats(pool)).maxSize, 4)
      }))
  })

  describe("shutdown", () => {
    it.scoped("fails waiters and later calls with PoolClosed, closes idle now and in-use on release", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 2, name: "main" })
        const a = yield* hold(pool)
        yield* pool.withConnection(() => Effect.void) // one idle
        const b = yield* hold(pool)
        const waiter = yield* Effect.fork(Effect.flip(Effect.scoped(pool.get)))
        yield* settle
        assert.strictEqual((yield* stats(pool)).waiting, 1)
        const done = yield* Effect.fork(ConnectionPool.shutdown(pool))
        yield* settle
        const error = yield* Fiber.join(waiter)
        assert.strictEqual(error._tag, "PoolClosed")
        assert.strictEqual(error.message, `pool "main" is closed`)
        assert.strictEqual((yield* Effect.flip(pool.withConnection(() => Effect.void)))._tag, "PoolClosed")
        assert.strictEqual((yield* Effect.flip(Effect.scoped(pool.tryGet)))._tag, "PoolClosed")
        assert.strictEqual(t.open().length, 2)
        assert.isTrue(Option.isNone(yield* Fiber.poll(done)))
        yield* a.release
        yield* b.release
        yield* Fiber.join(done)
        assert.strictEqual(t.open().length, 0)
        assert.isTrue(t.opened.every((c) => c.closes === 1))
        assert.isTrue((yield* stats(pool)).closed)
        yield* pool.shutdown() // idempotent
      }))

    it.scoped("closes connections still in use at the deadline, exactly once", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver })
        const a = yield* hold(pool)
        yield* Deferred.await(a.got)
        const done = yield* Effect.fork(pool.shutdown("10 seconds"))
        const second = yield* Effect.fork(pool.shutdown())
        yield* adjust("9 seconds")
        assert.strictEqual(t.open().length, 1)
        yield* adjust("1 second")
        yield* Fiber.join(done)
        yield* Fiber.join(second)
        assert.strictEqual(t.opened[0].closes, 1)
        yield* a.release
        yield* Fiber.join(a.fiber)
        assert.strictEqual(t.opened[0].closes, 1)
        assert.strictEqual((yield* stats(pool)).total, 0)
      }))

    it.effect("closing the pool's scope shuts it down and closes every connection", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        yield* Effect.scoped(Effect.gen(function*() {
          const pool = yield* ConnectionPool.make({ driver: t.driver, minSize: 2 })
          yield* eventually(pool.stats, (s) => s.idle === 2)
          yield* Effect.all([1, 2, 3].map(() => pool.withConnection(() => Effect.yieldNow())), { concurrency: 3 })
        }))
        assert.strictEqual(t.opened.length, 3)
        assert.isTrue(t.opened.every((c) => c.closes === 1))
      }))

    it.effect("a connect in flight at shutdown is interrupted and leaks nothing", () =>
      Effect.gen(function*() {
        const t = makeDriver({ connectDelay: "1 minute" })
        yield* Effect.scoped(Effect.gen(function*() {
          const pool = yield* ConnectionPool.make({ driver: t.driver })
          yield* Effect.fork(pool.withConnection(() => Effect.void))
          yield* settle
          assert.strictEqual((yield* pool.stats).pending, 1)
        }))
        assert.strictEqual(t.opened.length, 0)
      }))
  })

  describe("validation", () => {
    it.scoped("an idle connection past the bypass window is validated; a broken one is closed and replaced", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, validationBypass: "1 second" })
        yield* pool.withConnection(() => Effect.void)
        yield* pool.withConnection(() => Effect.void)
        assert.strictEqual(t.validations(), 0) // within the bypass window
        yield* adjust("2 seconds")
        yield* pool.withConnection(() => Effect.void)
        assert.strictEqual(t.validations(), 1)
        t.opened[0].broken = true
        yield* adjust("2 seconds")
        const id = yield* pool.withConnection((c) => Effect.succeed(c.id))
        assert.strictEqual(id, 2)
        assert.strictEqual(t.opened[0].closes, 1)
        const s = yield* stats(pool)
        assert.strictEqual(s.validationFailures, 1)
        // four borrows, each counted once, the last one on a new connection
        assert.deepStrictEqual([s.acquired, s.hits, s.misses], [4, 2, 2])
      }))

    it.scoped("a validation that hangs counts as failed after validationTimeout", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        let hang = false
        const pool = yield* ConnectionPool.make({
          driver: { ...t.driver, validate: () => hang ? Effect.never : Effect.succeed(true) },
          validationTimeout: "3 seconds"
        })
        yield* pool.withConnection(() => Effect.void)
        yield* adjust("1 minute")
        hang = true
        const fiber = yield* Effect.fork(pool.withConnection((c) => Effect.succeed(c.id)))
        yield* adjust("3 seconds")
        assert.strictEqual(yield* Fiber.join(fiber), 2)
        assert.strictEqual(t.opened[0].closes, 1)
      }))
  })

  describe("background work", () => {
    it.scoped("warms up to minSize and refills after a connection is closed", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, minSize: 3, maxSize: 5 })
        yield* eventually(pool.stats, (s) => s.idle === 3)
        yield* pool.withConnection((conn) => pool.invalidate(conn))
        yield* eventually(pool.stats, (s) => s.total === 3)
        assert.strictEqual(t.opened.length, 4)
      }))

    it.scoped("reaps connections idle past idleTimeout, down to minSize", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, minSize: 1, idleTimeout: "1 minute" })
        yield* Effect.all([1, 2, 3].map(() => pool.withConnection(() => Effect.yieldNow())), { concurrency: 3 })
        assert.strictEqual((yield* stats(pool)).idle, 3)
        yield* adjust("30 seconds")
        assert.strictEqual((yield* stats(pool)).idle, 3)
        yield* adjust("1 minute")
        const s = yield* stats(pool)
        assert.deepStrictEqual([s.total, s.idle], [1, 1])
        assert.strictEqual(t.open().length, 1)
      }))

    it.scoped("retires connections past maxLifetime, never while in use", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({
          driver: t.driver,
          maxLifetime: "10 minutes",
          maxLifetimeJitter: 0,
          idleTimeout: Duration.infinity
        })
        const holder = yield* hold(pool)
        yield* Deferred.await(holder.got)
        yield* pool.withConnection(() => Effect.void)
        yield* adjust("11 minutes")
        assert.strictEqual(t.opened[1].closes, 1) // idle one retired by the housekeeper
        assert.strictEqual(t.opened[0].closes, 0) // in use: untouched
        yield* holder.release
        yield* settle
        assert.strictEqual(t.opened[0].closes, 1) // retired on release
        assert.strictEqual((yield* stats(pool)).total, 0)
      }))

    it.scoped("lifetimes are jittered so connections do not all expire together", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({
          driver: t.driver,
          maxLifetime: "100 minutes",
          maxLifetimeJitter: 0.5,
          idleTimeout: Duration.infinity,
          maxSize: 20
        })
        yield* Effect.all(Array.from({ length: 20 }, () => pool.withConnection(() => Effect.yieldNow())), {
          concurrency: 20
        })
        yield* adjust("75 minutes")
        const closed = t.opened.filter((c) => c.closes === 1).length
        assert.isAbove(closed, 0)
        assert.isBelow(closed, 20)
      }))

    it.scoped("keepalive validates idle connections and drops broken ones", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({
          driver: t.driver,
          keepaliveInterval: "1 minute",
          idleTimeout: "1 hour"
        })
        yield* Effect.all([1, 2].map(() => pool.withConnection(() => Effect.yieldNow())), { concurrency: 2 })
        yield* adjust("61 seconds")
        assert.isAtLeast(t.validations(), 2)
        t.opened[0].broken = true
        yield* adjust("61 seconds")
        assert.strictEqual(t.opened[0].closes, 1)
        assert.strictEqual(t.opened[1].closes, 0)
        assert.deepStrictEqual([(yield* stats(pool)).total, (yield* stats(pool)).idle], [1, 1])
      }))
  })

  describe("connect failures", () => {
    it.scoped("a waiter gets ConnectionError at once, naming the pool; the pool is left clean", () =>
      Effect.gen(function*() {
        const t = makeDriver({ down: true })
        // the breaker off: this is about each caller hearing of its own connect's failure
        const pool = yield* ConnectionPool.make({ driver: t.driver, name: "orders", breakerThreshold: 0 })
        const errors = yield* Effect.all(
          Array.from({ length: 5 }, () => Effect.flip(pool.withConnection(() => Effect.void))),
          { concurrency: 5 }
        )
        for (const error of errors) {
          assert.strictEqual(error._tag, "ConnectionError")
          assert.include(error.message, `pool "orders": connect to test:1 refused`)
        }
        const s = yield* stats(pool)
        assert.deepStrictEqual([s.total, s.pending, s.waiting], [0, 0, 0])
        assert.strictEqual(s.connectFailures, 5)
        t.setDown(false)
        assert.strictEqual(yield* pool.withConnection((c) => Effect.succeed(c.id)), 1)
      }))

    it.scoped("waiters queued behind a full pool still hear of failures instead of hanging", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
        const holder = yield* hold(pool)
        const conn = yield* Deferred.await(holder.got)
        const waiters = yield* Effect.forEach([1, 2, 3], () => Effect.fork(Effect.flip(Effect.scoped(pool.get))))
        yield* settle
        t.setDown(true)
        yield* pool.invalidate(conn)
        yield* holder.release // closed: its slot goes to a connect for the head waiter, which fails, and so on
        for (const w of waiters) assert.strictEqual((yield* Fiber.join(w))._tag, "ConnectionError")
      }))

    it.scoped("connectRetries retries with backoff before failing", () =>
      Effect.gen(function*() {
        const t = makeDriver({ failures: 2 })
        const pool = yield* ConnectionPool.make({ driver: t.driver, connectRetries: 2, connectBackoff: "1 second" })
        const fiber = yield* Effect.fork(pool.withConnection((c) => Effect.succeed(c.id)))
        yield* settle
        assert.strictEqual(t.attempts(), 1)
        yield* adjust("1 second")
        assert.strictEqual(t.attempts(), 2)
        yield* adjust("2 seconds")
        assert.strictEqual(yield* Fiber.join(fiber), 1)
        assert.strictEqual(t.attempts(), 3)
      }))

    it.scoped("after connectRetries the error says how many attempts were made", () =>
      Effect.gen(function*() {
        const t = makeDriver({ down: true })
        const pool = yield* ConnectionPool.make({ driver: t.driver, connectRetries: 1, connectBackoff: "1 second" })
        const fiber = yield* Effect.fork(Effect.flip(pool.withConnection(() => Effect.void)))
        yield* adjust("1 second")
        const error = yield* Fiber.join(fiber)
        assert.strictEqual(error._tag === "ConnectionError" && error.attempts, 2)
        assert.include(error.message, "(after 2 attempts)")
      }))

    it.scoped("warm-up backs off while the server is down and recovers when it is back", () =>
      Effect.gen(function*() {
        const t = makeDriver({ down: true })
        const pool = yield* ConnectionPool.make({
          driver: t.driver,
          minSize: 2,
          connectBackoff: "100 millis",
          connectBackoffMax: "5 seconds",
          breakerThreshold: 0 // the warm-up's own backoff; with the breaker on, its probe takes over (Faults.test.ts)
        })
        yield* settle
        assert.strictEqual(t.attempts(), 1) // one try, then a backoff sleep: no hot loop
        for (let i = 0; i < 60; i++) yield* adjust("1 second")
        // 100ms doubling to a 5 s cap, jittered to half..full: at most ~25 tries in a minute, not thousands
        assert.isAtMost(t.attempts(), 30)
        assert.isAtLeast(t.attempts(), 8)
        t.setDown(false)
        yield* adjust("5 seconds")
        const s = yield* stats(pool)
        assert.deepStrictEqual([s.total, s.idle], [2, 2])
      }))

    it.scoped("a connect that dies is reported as a ConnectionError, not a defect", () =>
      Effect.gen(function*() {
        const pool = yield* ConnectionPool.make({
          driver: { connect: Effect.die(new Error("driver bug")), close: () => Effect.void }
        })
        const error = yield* Effect.flip(pool.withConnection(() => Effect.void))
        assert.strictEqual(error._tag, "ConnectionError")
        assert.include(error.message, "died")
      }))
  })

  describe("options", () => {
    const invalid = [
      [{ minSize: -1 }, "minSize"],
      [{ maxSize: 0 }, "maxSize"],
      [{ maxSize: 2.5 }, "maxSize"],
      [{ minSize: 5, maxSize: 2 }, "minSize"],
      [{ maxSize: Number.NaN }, "maxSize"],
      [{ acquireTimeout: 0 }, "acquireTimeout"],
      [{ acquireTimeout: -5 }, "acquireTimeout"],
      [{ acquireTimeout: Number.NaN }, "acquireTimeout"],
      [{ acquireTimeout: Duration.infinity }, "acquireTimeout"],
      [{ idleTimeout: "soon" as Duration.DurationInput }, "idleTimeout"],
      [{ connectTimeout: "0 seconds" }, "connectTimeout"],
      [{ maxLifetimeJitter: 1 }, "maxLifetimeJitter"],
      [{ connectRetries: -1 }, "connectRetries"],
      [{ connectBackoff: "10 seconds", connectBackoffMax: "1 second" }, "connectBackoffMax"],
      [{ name: "" }, "name"]
    ] as const
    for (const [options, option] of invalid) {
      it.scoped(`rejects ${JSON.stringify(options)} with InvalidConfig(${option})`, () =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(
            ConnectionPool.make({ driver: makeDriver().driver, ...(options as ConnectionPool.PoolConfig) })
          )
          assert.strictEqual(error._tag, "InvalidConfig")
          assert.strictEqual(error.option, option)
          assert.include(error.message, `invalid pool option ${option}`)
        }))
    }
  })

  describe("as a service", () => {
    class Primary extends ConnectionPool.Tag("test/Primary")<Primary, Conn>() {}
    class Replica extends ConnectionPool.Tag("test/Replica")<Replica, Conn>() {}

    it.effect("two pools of one connection type live side by side", () =>
      Effect.gen(function*() {
        const primary = makeDriver()
        const replica = makeDriver()
        const PoolsLive = Layer.merge(
          Primary.layer({ driver: primary.driver, name: "primary" }),
          Replica.layer({ driver: replica.driver, name: "replica", maxSize: 3 })
        )
        const [p, r] = yield* Effect.gen(function*() {
          const p = yield* Primary.withConnection((conn) => Effect.succeed(conn))
          const r = yield* Replica.withConnection((conn) => Effect.succeed(conn))
          yield* Effect.scoped(Primary.get)
          return [p, r] as const
        }).pipe(Effect.provide(PoolsLive))
        assert.strictEqual(primary.opened[0], p)
        assert.strictEqual(replica.opened[0], r)
        assert.isTrue(primary.opened.every((c) => c.closes === 1)) // the layer's scope closed them
      }))

    it.effect("accessors reach every operation", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        yield* Effect.gen(function*() {
          yield* Primary.withConnectionTry(() => Effect.void)
          yield* Effect.scoped(Primary.tryGet)
          assert.strictEqual((yield* Primary.stats).acquired, 2)
          yield* Primary.resize({ maxSize: 2 })
          yield* Primary.drain
          assert.strictEqual((yield* Primary.stats).total, 0)
          yield* Primary.withConnection((conn) => Primary.invalidate(conn))
          yield* Primary.shutdown()
          assert.isTrue((yield* Primary.stats).closed)
        }).pipe(Effect.provide(Primary.layer({ driver: t.driver })))
      }))

    it.effect("layerConfig reads the options from Config", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const s = yield* Primary.stats.pipe(
          Effect.provide(Primary.layerConfig(t.driver, {
            maxSize: Config.integer("POOL_MAX"),
            name: Config.string("POOL_NAME")
          })),
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["POOL_MAX", "7"], ["POOL_NAME", "cfg"]])))
        )
        assert.strictEqual(s.maxSize, 7)
        assert.strictEqual(s.name, "cfg")
      }))

    it.effect("layer fails with InvalidConfig on bad options", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          Effect.provide(Primary.stats, Primary.layer({ driver: makeDriver().driver, maxSize: -1 }))
        )
        assert.strictEqual(error._tag, "InvalidConfig")
      }))
  })
})

