import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Metric } from "effect"
import { ConnectionPool, PoolError } from "../src/index.js"
import { adjust, type Conn, hold, makeDriver, settle } from "./utils.js"

/** The `db.client.connection.overloaded` counter of the pool named `name`. */
const overloadedCount = (name: string) =>
  Effect.map(Metric.snapshot, (pairs) => {
    const pair = pairs.find((p) =>
      p.metricKey.name === "db.client.connection.overloaded" &&
      p.metricKey.tags.some((t) => t.key === "db.client.connection.pool.name" && t.value === name)
    )
    return pair === undefined ? 0 : (pair.metricState as unknown as { count: number }).count
  })

const refused = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.flatMap(Effect.exit(effect), (exit) => {
    if (Exit.isFailure(exit) && exit.cause._tag === "Fail") return Effect.succeed(exit.cause.error)
    return Effect.dieMessage(`expected a failure, got ${String(exit)}`)
  })

describe("overload shedding", () => {
  describe("maxWaiting", () => {
    it.scoped("with maxWaiting K, the K+1th waiter fails at once with PoolOverloaded and the stats; the queue drains FIFO", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ name: "orders", driver: t.driver, maxSize: 1, maxWaiting: 2 })
        const a = yield* hold(pool)
        yield* Deferred.await(a.got) // (a caller waiting for its connect counts as waiting too)
        const waiter = (n: number) => Effect.fork(pool.withConnection((conn) => Effect.succeed([n, conn.id] as const)))
        const b = yield* waiter(2)
        const c = yield* waiter(3)
        yield* settle
        assert.strictEqual((yield* pool.stats).waiting, 2)

        const error = yield* refused(pool.withConnection(() => Effect.succeed("never runs")))
        assert.instanceOf(error, PoolError.PoolOverloaded)
        const e = error as PoolError.PoolOverloaded
        assert.strictEqual(e._tag, "PoolOverloaded")
        assert.isTrue(PoolError.isPoolError(e))
        assert.deepStrictEqual([e.pool, e.reason, e.waiting, e.maxWaiting], ["orders", "maxWaiting", 2, 2])
        assert.deepStrictEqual([e.stats.inUse, e.stats.waiting, e.stats.overloadFailures], [1, 2, 1])
        assert.strictEqual(
          e.message,
          `pool "orders" is overloaded: 2 callers waiting, the limit (maxWaiting) is 2; refused at once ` +
            `(total=1 inUse=1 idle=0 pending=0 waiting=2 max=1)`
        )
        // it never joined the queue
        assert.strictEqual((yield* pool.stats).waiting, 2)
        assert.strictEqual((yield* pool.stats).overloadFailures, 1)
        assert.strictEqual(yield* overloadedCount("orders"), 1)

        yield* a.release
        assert.deepStrictEqual(yield* Fiber.join(b), [2, 1])
        assert.deepStrictEqual(yield* Fiber.join(c), [3, 1])
        // the queue drained: a caller is admitted again
        const d = yield* hold(pool)
        assert.strictEqual((yield* Deferred.await(d.got)).id, 1)
        yield* d.release
        const s = yield* pool.stats
        assert.deepStrictEqual([s.acquired, s.overloadFailures, s.timeouts, s.created], [4, 1, 0, 1])
      }))

    it.scoped("released connections go to the waiters in arrival order, with shed callers in between", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1, maxWaiting: 3 })
        const first = yield* hold(pool)
        yield* Deferred.await(first.got)
        const served: Array<number> = []
        const fibers: Array<Fiber.RuntimeFiber<void, PoolError.PoolError>> = []
        const outcomes: Array<string> = []
        for (let n = 1; n <= 6; n++) {
          fibers.push(
            yield* pool.withConnection(() => Effect.sync(() => void served.push(n))).pipe(
              Effect.tapError((e) => Effect.sync(() => void outcomes.push(`${n}:${e._tag}`))),
              Effect.fork
            )
          )
          yield* settle
        }
        assert.deepStrictEqual(outcomes, ["4:PoolOverloaded", "5:PoolOverloaded", "6:PoolOverloaded"])
        yield* first.release
        yield* Effect.forEach(fibers, (f) => Fiber.await(f))
        assert.deepStrictEqual(served, [1, 2, 3])
      }))

    it.scoped("a pool still growing is not shed: maxWaiting 0 queues callers a connect was started for", () =>
      Effect.gen(function*() {
        const t = makeDriver({ connectDelay: "1 second" })
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 2, maxWaiting: 0 })
        const a = yield* hold(pool)
        const b = yield* hold(pool)
        yield* settle
        assert.deepStrictEqual([(yield* pool.stats).waiting, (yield* pool.stats).pending], [2, 2])
        const error = yield* refused(Effect.scoped(pool.get))
        assert.strictEqual(error._tag, "PoolOverloaded")
        yield* adjust("1 second")
        assert.strictEqual((yield* Deferred.await(a.got)).id, 1)
        assert.strictEqual((yield* Deferred.await(b.got)).id, 2)
        // idle connections are always lent, whatever maxWaiting says
        yield* a.release
        yield* settle
        assert.strictEqual(yield* pool.withConnection((conn) => Effect.succeed(conn.id)), 1)
        yield* b.release
      }))

    it.scoped("an interrupted waiter frees its place in the queue and leaks nothing", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1, maxWaiting: 1 })
        const a = yield* hold(pool)
        yield* Deferred.await(a.got)
        const b = yield* hold(pool)
        yield* settle
        assert.strictEqual((yield* refused(Effect.scoped(pool.get)))._tag, "PoolOverloaded")
        yield* Fiber.interrupt(b.fiber)
        assert.strictEqual((yield* pool.stats).waiting, 0)
        const c = yield* hold(pool)
        yield* settle
        assert.strictEqual((yield* pool.stats).waiting, 1)
        yield* a.release
        assert.strictEqual((yield* Deferred.await(c.got)).id, 1)
        yield* c.release
        yield* settle
        const s = yield* pool.stats
        assert.deepStrictEqual([s.total, s.idle, s.waiting, s.overloadFailures], [1, 1, 0, 1])
        assert.strictEqual(t.open().length, 1)
      }))

    it.scoped("withConnectionCallback is shed the same way; tryGet still fails with PoolEmpty", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1, maxWaiting: 0 })
        const a = yield* hold(pool)
        yield* Deferred.await(a.got)
        const viaCallback = yield* refused(
          pool.withConnectionCallback<number, never>((conn: Conn, done) => done(Exit.succeed(conn.id)))
        )
        assert.strictEqual(viaCallback._tag, "PoolOverloaded")
        assert.strictEqual((yield* refused(Effect.scoped(pool.tryGet)))._tag, "PoolEmpty")
        const s = yield* pool.stats
        assert.deepStrictEqual([s.overloadFailures, s.emptyFailures], [1, 1])
        yield* a.release
      }))

    it.scoped("the breaker open with connections in use: callers past maxWaiting are shed too", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 3, maxWaiting: 1, breakerThreshold: 1 })
        const a = yield* hold(pool)
        yield* Deferred.await(a.got)
        t.setDown(true)
        // the connect for this caller fails and opens the breaker
        assert.strictEqual((yield* refused(Effect.scoped(pool.get)))._tag, "ConnectionError")
        assert.isTrue((yield* pool.stats).breakerOpen)
        const b = yield* hold(pool) // waits for a's release: nothing else is coming
        yield* settle
        assert.strictEqual((yield* refused(Effect.scoped(pool.get)))._tag, "PoolOverloaded")
        yield* a.release
        assert.strictEqual((yield* Deferred.await(b.got)).id, 1)
        yield* b.release
      }))

    it.effect("maxWaiting must be a non-negative integer or Infinity; shedOnExpectedWait a boolean", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const make = (config: ConnectionPool.PoolConfig) =>
          Effect.scoped(Effect.as(ConnectionPool.make({ ...config, driver: t.driver }), "ok"))
        const reason = (config: ConnectionPool.PoolConfig) =>
          Effect.map(Effect.flip(make(config)), (e) => e.message)
        assert.strictEqual(yield* reason({ maxWaiting: -1 }), "invalid pool option maxWaiting = -1: must be at least 0")
        assert.strictEqual(yield* reason({ maxWaiting: 1.5 }), "invalid pool option maxWaiting = 1.5: must be an integer")
        assert.strictEqual(yield* reason({ maxWaiting: NaN }), "invalid pool option maxWaiting = NaN: must be an integer")
        assert.strictEqual(
          yield* reason({ shedOnExpectedWait: "yes" as unknown as boolean }),
          `invalid pool option shedOnExpectedWait = "yes": must be true or false`
        )
        assert.strictEqual(yield* make({ maxWaiting: Infinity }), "ok")
        assert.strictEqual(yield* make({ maxWaiting: 0, shedOnExpectedWait: true }), "ok")
      }))
  })

  describe("shedOnExpectedWait", () => {
    it.scoped("sheds a caller whose expected wait (ahead × mean use ÷ open) exceeds its acquireTimeout", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({
          name: "api",
          driver: t.driver,
          maxSize: 2,
          acquireTimeout: "1 second",
          shedOnExpectedWait: true
        })
        // teach the pool that a use takes 500 ms
        const uses = yield* Effect.fork(
          Effect.all([1, 2].map(() => pool.withConnection(() => Effect.sleep("500 millis"))), {
            concurrency: "unbounded"
          })
        )
        yield* adjust("500 millis")
        yield* Fiber.join(uses)
        assert.strictEqual((yield* pool.stats).useTimeRecentMs, 500)

        const holders = [yield* hold(pool), yield* hold(pool)]
        yield* settle
        // waiting k callers ahead: expected (k + 1) × 500 / 2 ms; admitted up to 1000 ms
        const queued = []
        for (let k = 0; k < 4; k++) queued.push(yield* hold(pool))
        yield* settle
        assert.strictEqual((yield* pool.stats).waiting, 4)
        const error = yield* refused(Effect.scoped(pool.get))
        assert.instanceOf(error, PoolError.PoolOverloaded)
        const e = error as PoolError.PoolOverloaded
        assert.strictEqual(e.reason, "expectedWait")
        assert.strictEqual(e.waiting, 4)
        assert.strictEqual(Duration.toMillis(e.expectedWait!), 1250)
        assert.strictEqual(Duration.toMillis(e.timeout!), 1000)
        assert.strictEqual(e.maxWaiting, Infinity)
        assert.match(e.message, /^pool "api" is overloaded: 4 callers waiting, expected wait 1s 250ms exceeds acquireTimeout 1s/)
        assert.strictEqual(yield* overloadedCount("api"), 1)

        // the admitted ones are served in order as connections come back
        for (const h of holders) yield* h.release
        for (const [i, q] of queued.entries()) {
          const conn = yield* Deferred.await(q.got)
          assert.isTrue(conn.id === 1 || conn.id === 2, `waiter ${i}`)
          yield* q.release
        }
        assert.strictEqual((yield* pool.stats).timeouts, 0)
      }))

    it.scoped("off by default: a long queue is not shed, its callers time out as before", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1, acquireTimeout: "1 second" })
        const uses = yield* Effect.fork(pool.withConnection(() => Effect.sleep("10 seconds")))
        yield* adjust("10 seconds")
        yield* Fiber.join(uses)
        const a = yield* hold(pool)
        const waiters = []
        for (let k = 0; k < 5; k++) waiters.push(yield* hold(pool))
        yield* settle
        assert.strictEqual((yield* pool.stats).waiting, 5)
        yield* adjust("1 second")
        for (const w of waiters) assert.strictEqual((yield* Effect.flip(Deferred.await(w.got)))._tag, "PoolTimeout")
        const s = yield* pool.stats
        assert.deepStrictEqual([s.overloadFailures, s.timeouts], [0, 5])
        yield* a.release
      }))

    it.scoped("nothing measured yet: no caller is shed on expected wait", () =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({
          driver: t.driver,
          maxSize: 1,
          acquireTimeout: "1 second",
          shedOnExpectedWait: true
        })
        const a = yield* hold(pool)
        const waiters = []
        for (let k = 0; k < 3; k++) waiters.push(yield* hold(pool))
        yield* settle
        assert.deepStrictEqual([(yield* pool.stats).waiting, (yield* pool.stats).overloadFailures], [3, 0])
        yield* a.release
        for (const w of waiters) {
          yield* Deferred.await(w.got)
          yield* w.release
        }
      }))
  })
})
