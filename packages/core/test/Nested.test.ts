import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Ref, Scope } from "effect"
import { ConnectionPool, PoolError } from "../src/index.js"
import { adjust, type Conn, eventually, makeDriver, settle } from "./utils.js"

// Nested acquire: a fiber that holds a connection from a pool and asks the same pool again. `nested: "reuse"`
// (the default) hands it the connection it holds, `"fail"` fails at once with `NestedAcquire`, `"allow"` is a
// second borrow like any other, which deadlocks a pool whose every connection is held by a fiber doing it.

/** `n` fibers that each take a connection, wait until all `n` hold one, then nest a second borrow in it. */
const everyoneNests = (pool: ConnectionPool.ConnectionPool<Conn>, n: number) =>
  Effect.gen(function*() {
    const holding = yield* Ref.make(0)
    const go = yield* Deferred.make<void>()
    const fibers = yield* Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) =>
      pool.withConnection((outer) =>
        Effect.gen(function*() {
          yield* Ref.update(holding, (k) => k + 1)
          yield* Deferred.await(go)
          const inner = yield* pool.withConnection((conn) => Effect.succeed(conn.id))
          return [i, outer.id, inner] as const
        })
      ).pipe(Effect.fork))
    yield* eventually(Ref.get(holding), (k) => k === n)
    yield* Deferred.succeed(go, undefined)
    return fibers
  })

describe("nested acquire", () => {
  it.scoped("the deadlock it prevents: maxSize N, N fibers each nesting. `allow` times out, the default completes", () =>
    Effect.gen(function*() {
      const n = 4
      const allow = yield* ConnectionPool.make({
        driver: makeDriver().driver,
        maxSize: n,
        acquireTimeout: "2 seconds",
        nested: "allow"
      })
      const stuck = yield* everyoneNests(allow, n)
      yield* settle
      assert.strictEqual((yield* allow.stats).waiting, n) // every connection held by a fiber waiting for another
      yield* adjust("2 seconds")
      for (const fiber of stuck) {
        const exit = yield* Fiber.await(fiber)
        assert.isTrue(Exit.isFailure(exit))
        const error = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause) as PoolError.PoolTimeout
        assert.strictEqual(error._tag, "PoolTimeout")
        assert.strictEqual(error.phase, "waiting")
      }

      const reuse = yield* ConnectionPool.make({ driver: makeDriver().driver, maxSize: n, acquireTimeout: "2 seconds" })
      const done = yield* everyoneNests(reuse, n)
      const results = yield* Fiber.join(Fiber.all(done)) // no clock moved: nobody waited
      for (const [, outer, inner] of results) assert.strictEqual(inner, outer) // the connection it held
      const s = yield* reuse.stats
      assert.deepStrictEqual([s.acquired, s.inUse, s.idle, s.waiting, s.timeouts], [n, 0, n, 0, 0])
    }))

  it.scoped("reuse: the inner borrow gets the held connection and does not return it; the outer one does", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
      const seen = yield* pool.withConnection((outer) =>
        Effect.gen(function*() {
          const inner = yield* pool.withConnection((conn) => Effect.succeed(conn))
          const afterInner = yield* pool.stats
          const scoped = yield* Effect.scoped(pool.get)
          const tried = yield* pool.withConnectionTry((conn) => Effect.succeed(conn)) // a full pool: still served
          const viaCallback = yield* pool.withConnectionCallback<Conn, never>((conn, done) => done(Exit.succeed(conn)))
          return { outer, inner, scoped, tried, viaCallback, afterInner }
        })
      )
      for (const conn of [seen.inner, seen.scoped, seen.tried, seen.viaCallback]) assert.strictEqual(conn, seen.outer)
      assert.strictEqual(seen.afterInner.inUse, 1) // still held by the outer borrow
      const s = yield* pool.stats
      assert.deepStrictEqual([s.acquired, s.inUse, s.idle, s.created], [1, 0, 1, 1])
    }))

  it.scoped("fail: every way to borrow fails at once with NestedAcquire naming the pool; the outer borrow goes on", () =>
    Effect.gen(function*() {
      const pool = yield* ConnectionPool.make({ driver: makeDriver().driver, name: "orders", nested: "fail" })
      const errors = yield* pool.withConnection(() =>
        Effect.all([
          Effect.flip(pool.withConnection(() => Effect.void)),
          Effect.flip(pool.withConnectionTry(() => Effect.void)),
          Effect.flip(Effect.scoped(pool.get)),
          Effect.flip(Effect.scoped(pool.tryGet)),
          Effect.flip(pool.withConnectionCallback<void, never>((_, done) => done(Exit.void)))
        ])
      )
      for (const error of errors) {
        assert.strictEqual(error._tag, "NestedAcquire")
        assert.isTrue(PoolError.isPoolError(error))
        assert.match(error.message, /^pool "orders": fiber #\d+ already holds a connection from this pool/)
      }
      const s = yield* pool.stats
      assert.deepStrictEqual([s.acquired, s.inUse, s.idle, s.waiting], [1, 0, 1, 0]) // nobody waited
      // a fiber holding nothing is not nested
      assert.strictEqual(yield* pool.withConnection((conn) => Effect.succeed(conn.id)), 1)
    }))

  it.scoped("a forked fiber does not inherit the hold: it borrows its own connection", () =>
    Effect.gen(function*() {
      const pool = yield* ConnectionPool.make({ driver: makeDriver().driver, maxSize: 2, nested: "fail" })
      const [outer, child, joined] = yield* pool.withConnection((outer) =>
        Effect.gen(function*() {
          const child = yield* Fiber.join(yield* Effect.fork(pool.withConnection((conn) => Effect.succeed(conn.id))))
          // joining the child left this fiber's hold as it was
          const joined = yield* Effect.flip(pool.withConnection(() => Effect.void))
          return [outer.id, child, joined._tag] as const
        })
      )
      assert.notStrictEqual(child, outer)
      assert.strictEqual(joined, "NestedAcquire")
    }))

  it.scoped("an inner borrow that dies leaves the connection to be closed when the outer one returns it", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
      yield* pool.withConnection(() =>
        pool.withConnection(() => Effect.die("boom")).pipe(Effect.catchAllDefect(() => Effect.void))
      )
      assert.strictEqual(t.opened[0].closes, 1)
      // a typed failure of an inner borrow is no reason to close it
      yield* pool.withConnection(() => Effect.ignore(pool.withConnection(() => Effect.fail("typed"))))
      assert.strictEqual(t.opened[1].closes, 0)
      assert.strictEqual((yield* pool.stats).idle, 1)
    }))

  it.scoped("a nested scoped borrow that outlives the outer one keeps the connection until its scope closes", () =>
    Effect.gen(function*() {
      const pool = yield* ConnectionPool.make({ driver: makeDriver().driver, maxSize: 1 })
      const later = yield* Scope.make()
      const conn = yield* pool.withConnection(() => Scope.extend(pool.get, later))
      assert.strictEqual((yield* pool.stats).inUse, 1)
      yield* Scope.close(later, Exit.void)
      const s = yield* pool.stats
      assert.deepStrictEqual([s.inUse, s.idle, s.acquired], [0, 1, 1])
      assert.strictEqual(conn.id, 1)
    }))

  it.scoped("interrupted while nested: the connection is closed, nothing leaks", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
      const started = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(
        pool.withConnection(() => pool.withConnection(() => Effect.zipRight(Deferred.succeed(started, undefined), Effect.never)))
      )
      yield* Deferred.await(started)
      yield* Fiber.interrupt(fiber)
      const s = yield* pool.stats
      assert.deepStrictEqual([s.inUse, s.total], [0, 0])
      assert.strictEqual(t.opened[0].closes, 1)
    }))

  it.effect("nested: an unknown value is InvalidConfig", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(ConnectionPool.make({
        driver: makeDriver().driver,
        nested: "sometimes" as never
      })))
      assert.strictEqual(error._tag, "InvalidConfig")
      assert.strictEqual(error.option, "nested")
    }))
})
