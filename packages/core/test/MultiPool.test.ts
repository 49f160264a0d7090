import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, TestClock } from "effect"
import { MultiPool } from "../src/index.js"
import { ConnectionError, type InvalidConfig } from "../src/PoolError.js"
import { type Conn, eventually, makeDriver, settle, type TestDriver } from "./utils.js"

const fleet = (n: number, options: Parameters<typeof makeDriver>[0] = {}) =>
  Array.from({ length: n }, () => makeDriver(options))

const servers = (drivers: ReadonlyArray<TestDriver>) =>
  drivers.map((t, i) => ({ name: "abcdefgh"[i]!, driver: t.driver }))

/** Which server (by index) a connection came from. */
const owner = (drivers: ReadonlyArray<TestDriver>, conn: Conn) => drivers.findIndex((t) => t.opened.includes(conn))

const served = (pool: MultiPool.MultiPool<Conn>, drivers: ReadonlyArray<TestDriver>, n: number) =>
  Effect.gen(function*() {
    const counts = drivers.map(() => 0)
    for (let i = 0; i < n; i++) counts[yield* pool.withConnection((conn) => Effect.succeed(owner(drivers, conn)))]!++
    return counts
  })

const invalid = (options: MultiPool.Options<Conn>) =>
  Effect.flip(MultiPool.make(options)) as Effect.Effect<InvalidConfig, never, never>

describe("MultiPool", () => {
  describe("configuration", () => {
    it.scoped("an empty list, duplicates and bad options are InvalidConfig naming the option", () =>
      Effect.gen(function*() {
        const [a, b] = fleet(2)
        assert.strictEqual((yield* invalid({ servers: [] })).option, "servers")
        const dup = yield* invalid({ servers: [{ name: "x", driver: a!.driver }, { name: "x", driver: b!.driver }] })
        assert.deepStrictEqual([dup.option, dup.reason], ["servers[1].name", "duplicate server name"])
        const bad = yield* invalid({
          servers: [{ name: "x", driver: a!.driver }, { name: "y", driver: b!.driver, maxSize: 0 }]
        })
        assert.strictEqual(bad.option, "servers[1] (y).maxSize")
        assert.strictEqual(a!.attempts(), 0)
        const shared = yield* invalid({ servers: servers([a!]), maxSizePerServer: -1 })
        assert.strictEqual(shared.option, "servers[0] (a).maxSize")
        const one = servers([a!])
        assert.strictEqual((yield* invalid({ servers: one, selection: "fastest" as any })).option, "selection")
        assert.strictEqual((yield* invalid({ servers: servers([a!]), banAfter: 1.5 })).option, "banAfter")
        assert.strictEqual((yield* invalid({ servers: servers([a!]), banTime: "0 millis" })).option, "banTime")
        assert.strictEqual((yield* invalid({ servers: servers([a!]), banJitter: 1 })).option, "banJitter")
        assert.strictEqual((yield* invalid({ servers: one, whenAllBanned: "x" as any })).option, "whenAllBanned")
      }))
  })

  describe("selection", () => {
    it.scoped("round-robin takes each server in turn and skips unhealthy ones", () =>
      Effect.gen(function*() {
        const drivers = fleet(3)
        const pool = yield* MultiPool.make({ servers: servers(drivers) })
        assert.deepStrictEqual(yield* served(pool, drivers, 6), [2, 2, 2])
        yield* pool.pipe(MultiPool.markUnhealthy(1))
        assert.deepStrictEqual(yield* served(pool, drivers, 6), [3, 0, 3])
        yield* MultiPool.markHealthy(pool, 1)
        assert.deepStrictEqual(yield* served(pool, drivers, 3), [1, 1, 1])
        const viaDual = yield* MultiPool.withConnection(pool, (conn) => Effect.succeed(owner(drivers, conn)))
        const viaPipe = yield* pool.pipe(MultiPool.withConnectionTry((conn) => Effect.succeed(owner(drivers, conn))))
        assert.deepStrictEqual([viaDual, viaPipe], [0, 1])
        assert.strictEqual((yield* MultiPool.stats(pool)).servers, 3)
        const wrong = yield* Effect.flip(pool.markUnhealthy(3))
        assert.strictEqual(wrong._tag, "InvalidConfig")
      }))

    it.scoped("least-in-use picks the server with the fewest borrows", () =>
      Effect.gen(function*() {
        const drivers = fleet(3)
        // one fiber holding six connections at once: `nested: "allow"`, or its later borrows would reuse the first
        const pool = yield* MultiPool.make({ servers: servers(drivers), selection: "least-in-use", nested: "allow" })
        const held = yield* Effect.forEach([0, 1, 2, 3, 4], () => pool.get)
        // 5 borrows over 3 servers: 2, 2, 1; the next two go to the one with 1, then round the ties
        const per = drivers.map((_, i) => held.filter((c) => owner(drivers, c) === i).length)
        assert.deepStrictEqual(per.sort(), [1, 2, 2])
        const sixth = yield* pool.get
        const counts = drivers.map((_, i) => [...held, sixth].filter((c) => owner(drivers, c) === i).length)
        assert.deepStrictEqual(counts, [2, 2, 2])
        const s = yield* pool.stats
        assert.deepStrictEqual(s.perServer.map((p) => p.stats.inUse), [2, 2, 2])
        assert.strictEqual(s.aggregate.inUse, 6)
      }))

    it.scoped("random spreads, and a selection function decides", () =>
      Effect.gen(function*() {
        const drivers = fleet(2)
        const pool = yield* MultiPool.make({ servers: servers(drivers), selection: "random" })
        const counts = yield* served(pool, drivers, 100)
        assert.isTrue(counts[0]! > 20 && counts[1]! > 20, `random spread ${counts}`)
        const last = yield* MultiPool.make({
          name: "last",
          servers: servers(fleet(3)),
          selection: (usable) => usable[usable.length - 1]!.index
        })
        const names = []
        for (let i = 0; i < 3; i++) {
          names.push(yield* last.withConnection(() => Effect.succeed("ok")))
        }
        const s = yield* last.stats
        assert.deepStrictEqual(s.perServer.map((p) => p.stats.acquired), [0, 0, 3])
        yield* last.markUnhealthy(2)
        yield* last.withConnection(() => Effect.void)
        assert.deepStrictEqual((yield* last.stats).perServer.map((p) => p.stats.acquired), [0, 1, 3])
      }))
  })

  describe("health", () => {
    it.scoped("a failing server is failed over, banned after banAfter failures, probed once, and rejoins", () =>
      Effect.gen(function*() {
        const drivers = fleet(2)
        const [a, b] = drivers
        a!.setDown(true)
        const pool = yield* MultiPool.make({
          servers: servers(drivers),
          banAfter: 2,
          banTime: "10 seconds",
          banJitter: 0
        })
        // round-robin starts at a: its connect fails, the caller moves to b
        assert.deepStrictEqual(yield* served(pool, drivers, 4), [0, 4])
        assert.strictEqual(a!.attempts(), 2) // turns 1 and 3 tried a
        let s = yield* pool.stats
        const [first] = s.perServer
        assert.deepStrictEqual([s.healthyServers, first!.banned, first!.consecutiveFailures], [1, true, 2])
        assert.include(s.perServer[0]!.lastError!, "refused")
        yield* served(pool, drivers, 4)
        assert.strictEqual(a!.attempts(), 2) // banned: nobody tries it
        // the ban is due: one probe, off the request path; a is still down, so it is banned again
        yield* TestClock.adjust("10 seconds")
        yield* settle
        assert.strictEqual(a!.attempts(), 3)
        assert.isTrue((yield* pool.stats).perServer[0]!.banned)
        a!.setDown(false)
        yield* TestClock.adjust("10 seconds")
        yield* eventually(pool.stats, (s) => s.healthyServers === 2)
        assert.strictEqual(a!.attempts(), 4)
        assert.strictEqual(a!.open().length, 0) // the probe's connection was closed
        assert.deepStrictEqual(yield* served(pool, drivers, 4), [2, 2])
        s = yield* pool.stats
        assert.strictEqual(s.perServer[0]!.consecutiveFailures, 0)
        assert.strictEqual(b!.open().length, 1)
      }))

    it.scoped("when every server is banned, all are unbanned rather than failing everyone", () =>
      Effect.gen(function*() {
        const drivers = fleet(2, { down: true })
        const pool = yield* MultiPool.make({ servers: servers(drivers), banAfter: 1 })
        const error = yield* Effect.flip(pool.withConnection(() => Effect.void))
        assert.strictEqual(error._tag, "ConnectionError")
        assert.include(error.message, "2 tried")
        assert.include(error.message, "a: connect to test:1 refused")
        assert.include(error.message, "b: connect to test:1 refused")
        assert.strictEqual((yield* pool.stats).healthyServers, 0)
        drivers[1]!.setDown(false)
        // every server banned: unban all, and the caller gets a connection from the one that came back
        const got = yield* pool.withConnection((conn) => Effect.succeed(owner(drivers, conn)))
        assert.strictEqual(got, 1)
      }))

    it.scoped("whenAllBanned: fail names each server and its last error; marked servers are never unbanned", () =>
      Effect.gen(function*() {
        const drivers = fleet(2, { down: true })
        const pool = yield* MultiPool.make({ servers: servers(drivers), banAfter: 1, whenAllBanned: "fail" })
        yield* Effect.flip(pool.withConnection(() => Effect.void))
        const error = yield* Effect.flip(pool.withConnection(() => Effect.void))
        assert.strictEqual(error._tag, "NoHealthyServer")
        if (error._tag !== "NoHealthyServer") return
        assert.deepStrictEqual(error.servers.map((s) => [s.name, s.reason]), [["a", "banned"], ["b", "banned"]])
        assert.include(error.message, "a: banned (last error: connect to test:1 refused)")
        const marked = yield* MultiPool.make({ name: "m", servers: servers(fleet(1)) })
        yield* marked.markUnhealthy(0)
        const none = yield* Effect.flip(marked.get)
        assert.strictEqual(none._tag, "NoHealthyServer")
      }))
  })

  describe("failover", () => {
    it.scoped("a failover attempt gets what is left of acquireTimeout, no more", () =>
      Effect.gen(function*() {
        const slowDown = makeDriver({ down: true, connectDelay: "3 seconds" })
        const hangs = makeDriver({ connectDelay: "never" })
        const pool = yield* MultiPool.make({
          servers: [{ name: "a", driver: slowDown.driver }, { name: "b", driver: hangs.driver }],
          acquireTimeout: "5 seconds"
        })
        const fiber = yield* Effect.fork(Effect.exit(pool.withConnection(() => Effect.void)))
        yield* TestClock.adjust("3 seconds")
        yield* settle
        assert.isNull(fiber.unsafePoll()) // moved to b
        yield* TestClock.adjust("2 seconds")
        yield* settle
        const exit = yield* Fiber.join(fiber)
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
          assert.strictEqual(exit.cause.error._tag, "PoolTimeout")
          assert.include(exit.cause.error.message, "(at b)")
        }
        const s = yield* pool.stats
        assert.deepStrictEqual([s.aggregate.inUse, s.aggregate.waiting], [0, 0])
      }))

    it.scoped("withConnectionCallback fails over before start, never after", () =>
      Effect.gen(function*() {
        const drivers = fleet(2)
        drivers[0]!.setDown(true)
        const pool = yield* MultiPool.make({ servers: servers(drivers) })
        let starts = 0
        const ok = yield* pool.withConnectionCallback<number, never>((conn, done) => {
          starts++
          done(Exit.succeed(owner(drivers, conn)))
        })
        assert.deepStrictEqual([ok, starts], [1, 1])
        // a ConnectionError reported by the operation itself is the caller's, not a reason to try elsewhere
        drivers[0]!.setDown(false)
        const error = yield* Effect.flip(pool.withConnectionCallback<never, ConnectionError>((_, done) => {
          starts++
          done(Exit.fail(new ConnectionError({ reason: "mine" })))
        }))
        assert.deepStrictEqual([error._tag === "ConnectionError" && error.reason, starts], ["mine", 2])
      }))

    it.scoped("tryGet tries each server; PoolEmpty only when all are full", () =>
      Effect.gen(function*() {
        const drivers = fleet(2)
        const pool = yield* MultiPool.make({ servers: servers(drivers), maxSizePerServer: 1, nested: "allow" })
        const first = yield* pool.tryGet
        const second = yield* pool.tryGet
        assert.deepStrictEqual([owner(drivers, first), owner(drivers, second)].sort(), [0, 1])
        const empty = yield* Effect.flip(pool.withConnectionTry(() => Effect.void))
        assert.strictEqual(empty._tag, "PoolEmpty")
      }))
  })

  describe("interruption and shutdown", () => {
    it.scoped("a waiter interrupted mid-failover leaks nothing; invalidate reaches the right server", () =>
      Effect.gen(function*() {
        const down = makeDriver({ down: true, connectDelay: "1 second" })
        const slow = makeDriver({ connectDelay: "5 seconds" })
        const pool = yield* MultiPool.make({
          servers: [{ name: "a", driver: down.driver }, { name: "b", driver: slow.driver }]
        })
        const fiber = yield* Effect.fork(pool.withConnection(() => Effect.never))
        yield* TestClock.adjust("2 seconds")
        yield* settle
        yield* Fiber.interrupt(fiber)
        yield* TestClock.adjust("10 seconds")
        yield* settle
        const s = yield* pool.stats
        assert.deepStrictEqual([s.aggregate.inUse, s.aggregate.waiting, s.aggregate.pending], [0, 0, 0])
        for (const c of slow.opened) assert.isAtMost(c.closes, 1)
        assert.strictEqual(slow.open().length, s.aggregate.total)
        const held = yield* Deferred.make<Conn>()
        const holder = yield* Effect.fork(Effect.scoped(Effect.flatMap(pool.get, (c) =>
          Effect.zipRight(Deferred.succeed(held, c), Effect.never))))
        yield* TestClock.adjust("10 seconds")
        const conn = yield* Deferred.await(held)
        yield* pool.invalidate(conn)
        yield* Fiber.interrupt(holder)
        assert.strictEqual(conn.closes, 1)
      }))

    it.scoped("shutdown closes every server's connections once; later calls fail PoolClosed", () =>
      Effect.gen(function*() {
        const drivers = fleet(2)
        const pool = yield* MultiPool.make({ servers: servers(drivers) })
        yield* served(pool, drivers, 4)
        yield* pool.shutdown()
        yield* pool.shutdown()
        for (const t of drivers) for (const c of t.opened) assert.strictEqual(c.closes, 1)
        assert.strictEqual((yield* Effect.flip(pool.get))._tag, "PoolClosed")
        assert.isTrue((yield* pool.stats).aggregate.closed)
      }))
  })

  describe("overload shedding", () => {
    it.scoped("a server that sheds the caller (maxWaiting) is passed over for the next; all shedding: PoolOverloaded", () =>
      Effect.gen(function*() {
        const drivers = fleet(2)
        const pool = yield* MultiPool.make({ servers: servers(drivers), maxSizePerServer: 1, maxWaiting: 0 })
        const release = yield* Deferred.make<void>()
        const held = yield* Deferred.make<Conn>()
        // one borrower holds server a's only connection
        const holder = yield* Effect.fork(
          pool.withConnection((conn) => Effect.zipRight(Deferred.succeed(held, conn), Deferred.await(release)))
        )
        assert.strictEqual(owner(drivers, yield* Deferred.await(held)), 0)
        // round-robin: the next borrower takes b's; then a caller finds both full, and both shed it
        const release2 = yield* Deferred.make<void>()
        const held2 = yield* Deferred.make<Conn>()
        const holder2 = yield* Effect.fork(
          pool.withConnection((conn) => Effect.zipRight(Deferred.succeed(held2, conn), Deferred.await(release2)))
        )
        assert.strictEqual(owner(drivers, yield* Deferred.await(held2)), 1)
        const error = yield* Effect.flip(pool.withConnection(() => Effect.void))
        assert.strictEqual(error._tag, "PoolOverloaded")
        assert.match(error.message, /^pool "multi" is overloaded: 0 callers waiting, the limit \(maxWaiting\) is 0/)
        // server b frees up: a caller round-robined to a (which sheds it) fails over to b
        yield* Deferred.succeed(release2, undefined)
        yield* Fiber.join(holder2)
        const owners = []
        for (let i = 0; i < 2; i++) owners.push(yield* pool.withConnection((conn) => Effect.succeed(owner(drivers, conn))))
        assert.deepStrictEqual(owners, [1, 1])
        const s = yield* pool.stats
        assert.isAtLeast(s.aggregate.overloadFailures, 2)
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(holder)
      }))
  })
})
