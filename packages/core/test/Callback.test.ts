import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Option, Tracer } from "effect"
import { ConnectionPool, PoolError } from "../src/index.js"
import type { Conn } from "./utils.js"
import { adjust, hold, makeDriver, settle } from "./utils.js"

/**
 * A callback-style operation whose completion the test controls: `start` records the connection and the `done`
 * callback; `finish` calls it. `cancels` counts the canceler's runs.
 */
const operation = <X = number, E = string>() => {
  const state = {
    conn: undefined as Conn | undefined,
    done: undefined as ((exit: Exit.Exit<X, E>) => void) | undefined,
    starts: 0,
    cancels: 0
  }
  const start = (conn: Conn, done: (exit: Exit.Exit<X, E>) => void) => {
    state.starts++
    state.conn = conn
    state.done = done
    return Effect.sync(() => void state.cancels++)
  }
  const finish = (exit: Exit.Exit<X, E>) => Effect.sync(() => state.done!(exit))
  return { state, start, finish }
}

/** A pool of one connection, held, and a callback operation queued behind the holder. */
const queuedBehindHolder = Effect.gen(function*() {
  const t = makeDriver()
  const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
  const holder = yield* hold(pool)
  yield* Deferred.await(holder.got)
  const op = operation()
  const waiter = yield* Effect.fork(pool.withConnectionCallback(op.start))
  yield* settle
  return { t, pool, holder, op, waiter }
})

describe("withConnectionCallback", () => {
  it.scoped("runs the operation on an idle connection and returns the connection", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver })
      // done called synchronously, from within start
      const id = yield* pool.withConnectionCallback<number, never>((conn, done) => done(Exit.succeed(conn.id)))
      assert.strictEqual(id, 1)
      // done called later
      const op = operation()
      const fiber = yield* Effect.fork(pool.withConnectionCallback(op.start))
      yield* settle
      assert.strictEqual(op.state.conn?.id, 1) // the same connection, reused
      assert.strictEqual((yield* pool.stats).inUse, 1)
      yield* op.finish(Exit.succeed(42))
      assert.strictEqual(yield* Fiber.join(fiber), 42)
      const s = yield* pool.stats
      assert.deepStrictEqual([s.total, s.idle, s.inUse, s.acquired, op.state.cancels], [1, 1, 0, 2, 0])
    }))

  it.scoped("a caller that waits has its operation started by the release that frees a connection", () =>
    Effect.gen(function*() {
      const { holder, op, pool, waiter } = yield* queuedBehindHolder
      assert.strictEqual((yield* pool.stats).waiting, 1)
      assert.strictEqual(op.state.starts, 0)
      // the holder's release runs in the holder's fiber; it starts the waiter's operation itself
      const started = yield* Deferred.make<number>()
      yield* holder.release
      yield* Fiber.await(holder.fiber)
      yield* Deferred.succeed(started, op.state.starts)
      assert.strictEqual(yield* Deferred.await(started), 1)
      assert.strictEqual(op.state.conn?.id, 1)
      yield* op.finish(Exit.succeed(7))
      assert.strictEqual(yield* Fiber.join(waiter), 7)
      const s = yield* pool.stats
      assert.deepStrictEqual([s.total, s.idle, s.waiting], [1, 1, 0])
    }))

  it.scoped("a typed failure returns the connection; a defect, or a start that throws, closes it", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver })
      const failed = yield* Effect.exit(
        pool.withConnectionCallback<never, string>((_, done) => done(Exit.fail("no such table")))
      )
      assert.deepStrictEqual(failed, Exit.fail("no such table"))
      assert.deepStrictEqual([(yield* pool.stats).idle, t.opened[0].closes], [1, 0])

      const died = yield* Effect.exit(pool.withConnectionCallback((_, done) => done(Exit.die("protocol out of sync"))))
      assert.isTrue(Exit.isFailure(died) && Cause.isDie(died.cause))
      assert.deepStrictEqual([(yield* pool.stats).total, t.opened[0].closes], [0, 1])

      const threw = yield* Effect.exit(pool.withConnectionCallback(() => {
        throw new Error("bad driver")
      }))
      assert.isTrue(Exit.isFailure(threw) && Cause.isDie(threw.cause))
      assert.deepStrictEqual([(yield* pool.stats).total, t.opened[1].closes], [0, 1])
      assert.strictEqual(t.open().length, 0)
    }))

  it.scoped("done gives the connection back at once: the next queued operation starts inside it", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
      const first = operation()
      const second = operation()
      const a = yield* Effect.fork(pool.withConnectionCallback(first.start))
      yield* settle
      const b = yield* Effect.fork(pool.withConnectionCallback(second.start))
      yield* settle
      assert.deepStrictEqual([first.state.starts, second.state.starts], [1, 0])
      // before done returns, and before the first caller's fiber runs again, the second operation has started
      const startedInsideDone = yield* Effect.sync(() => {
        first.state.done!(Exit.succeed(1))
        return second.state.starts
      })
      assert.strictEqual(startedInsideDone, 1)
      assert.strictEqual(second.state.conn, first.state.conn)
      assert.strictEqual(yield* Fiber.join(a), 1)
      const during = yield* pool.stats
      assert.deepStrictEqual([during.inUse, during.idle, during.waiting, during.acquired], [1, 0, 0, 2])
      yield* second.finish(Exit.succeed(2))
      assert.strictEqual(yield* Fiber.join(b), 2)
      const s = yield* pool.stats
      assert.deepStrictEqual([s.total, s.idle, s.inUse, s.acquired, t.opened.length], [1, 1, 0, 2, 1])
    }))

  it.scoped("synchronous operations queued behind a holder all run, in order, on the connection it frees", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
      const holder = yield* hold(pool)
      yield* Deferred.await(holder.got)
      const ran: Array<number> = []
      // each is done inside its start (as better-sqlite3 is): the connection comes back before start returns
      const sync = (i: number) =>
        pool.withConnectionCallback<number, string>((_, done) => {
          ran.push(i)
          done(i === 3 ? Exit.fail("typed") : Exit.succeed(i))
        })
      const fibers: Array<Fiber.RuntimeFiber<number, string | PoolError.PoolError>> = []
      for (let i = 0; i < 200; i++) {
        fibers.push(yield* Effect.fork(sync(i)))
        yield* settle
      }
      assert.deepStrictEqual([ran.length, (yield* pool.stats).waiting], [0, 200])
      yield* holder.release
      const exits = yield* Effect.forEach(fibers, Fiber.await)
      assert.deepStrictEqual(ran, Array.from({ length: 200 }, (_, i) => i))
      assert.deepStrictEqual(exits[3], Exit.fail("typed"))
      assert.isTrue(exits.every((exit, i) => i === 3 || Exit.isSuccess(exit) && exit.value === i))
      const s = yield* pool.stats
      assert.deepStrictEqual([s.total, s.idle, s.inUse, s.waiting, s.acquired, t.opened.length], [1, 1, 0, 0, 201, 1])
      // and one more, from idle: done at once, the connection back in the same step
      assert.strictEqual(yield* sync(7), 7)
      assert.deepStrictEqual([(yield* pool.stats).idle, (yield* pool.stats).acquired], [1, 202])
    }))

  it.live("operations completed from outside any fiber (a driver's I/O callback) hand over in FIFO order", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 2 })
      const order: Array<number> = []
      const fails = new Set([7, 21])
      const results = yield* Effect.forEach(
        Array.from({ length: 60 }, (_, i) => i),
        (i) =>
          Effect.exit(pool.withConnectionCallback<number, string>((_conn, done) => {
            order.push(i)
            // a typed failure returns the connection; a defect closes it
            setImmediate(() => done(fails.has(i) ? Exit.fail("bad") : i === 40 ? Exit.die("broken") : Exit.succeed(i)))
          })),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(order, Array.from({ length: 60 }, (_, i) => i))
      results.forEach((exit, i) => {
        if (fails.has(i)) assert.deepStrictEqual(exit, Exit.fail("bad"))
        else if (i === 40) assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause))
        else assert.deepStrictEqual(exit, Exit.succeed(i))
      })
      const s = yield* pool.stats
      assert.deepStrictEqual([s.inUse, s.waiting, s.acquired], [0, 0, 60])
      assert.strictEqual(t.open().length, s.total)
      assert.strictEqual(t.opened.filter((c) => c.closes === 1).length, 1) // the one that died, closed once
      assert.isTrue(t.opened.every((c) => c.closes <= 1))
    }).pipe(Effect.scoped))

  it.scoped("a caller interrupted while its operation runs has it cancelled and the connection closed", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver })
      const op = operation()
      const fiber = yield* Effect.fork(pool.withConnectionCallback(op.start))
      yield* settle
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(op.state.cancels, 1)
      const s = yield* pool.stats
      assert.deepStrictEqual([s.total, s.inUse, t.opened[0].closes], [0, 0, 1])
      yield* op.finish(Exit.succeed(1)) // a late completion is ignored
      assert.strictEqual((yield* pool.stats).total, 0)
    }))

  it.scoped("a waiter that times out or is interrupted never starts its operation", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1, acquireTimeout: "1 second" })
      const holder = yield* hold(pool)
      yield* Deferred.await(holder.got)
      const op = operation()
      const timedOut = yield* Effect.fork(pool.withConnectionCallback(op.start))
      const interrupted = yield* Effect.fork(pool.withConnectionCallback(op.start))
      yield* settle
      yield* Fiber.interrupt(interrupted)
      yield* adjust("1 second")
      const exit = yield* Fiber.await(timedOut)
      const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
      assert.isTrue(PoolError.isPoolError(error) && error._tag === "PoolTimeout")
      yield* holder.release
      yield* settle
      const s = yield* pool.stats
      assert.deepStrictEqual([op.state.starts, s.total, s.idle, s.waiting], [0, 1, 1, 0])
    }))

  it.scoped("a waiter interrupted at any instant around a handoff leaks nothing", () =>
    Effect.gen(function*() {
      const outcomes = new Set<boolean>()
      // negative: the release first, then the interrupt `-delay` yields later; else the other way round
      for (let delay = -20; delay < 20; delay++) {
        yield* Effect.scoped(Effect.gen(function*() {
          const { holder, op, pool, t, waiter } = yield* queuedBehindHolder
          const yields = Effect.repeatN(Effect.yieldNow(), Math.abs(delay))
          if (delay < 0) {
            yield* holder.release
            yield* yields
            yield* Fiber.interrupt(waiter)
          } else {
            yield* Effect.fork(Fiber.interrupt(waiter))
            yield* yields
            yield* holder.release
          }
          yield* settle
          const s = yield* pool.stats
          const started = op.state.starts === 1
          assert.deepStrictEqual([s.inUse, s.waiting, s.pending], [0, 0, 0], `delay ${delay}`)
          if (started) {
            // interrupted while its operation ran: cancelled, and the connection closed
            assert.deepStrictEqual([op.state.cancels, s.total, t.opened[0].closes], [1, 0, 1], `delay ${delay}`)
          } else {
            // interrupted before it started, even if a release had taken it: the connection is back
            assert.deepStrictEqual([s.total, s.idle, t.opened[0].closes], [1, 1, 0], `delay ${delay}`)
          }
          outcomes.add(started)
          yield* pool.shutdown()
          assert.strictEqual(t.open().length, 0, `delay ${delay}`)
        }))
      }
      assert.strictEqual(outcomes.size, 2) // both sides of the race were exercised
    }))

  it.scoped("a caller interrupted at any instant around a done whose connection must close closes it once", () =>
    Effect.gen(function*() {
      const outcomes = new Set<string>()
      // negative: done first, then the interrupt `-delay` yields later; else the other way round. The connection
      // was invalidated while in use, so the release in done leaves its closing to the caller's fiber.
      for (let delay = -20; delay < 20; delay++) {
        yield* Effect.scoped(Effect.gen(function*() {
          const t = makeDriver()
          const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
          const op = operation()
          const caller = yield* Effect.fork(pool.withConnectionCallback(op.start))
          yield* settle
          yield* pool.invalidate(op.state.conn!)
          const yields = Effect.repeatN(Effect.yieldNow(), Math.abs(delay))
          if (delay < 0) {
            yield* op.finish(Exit.succeed(1))
            yield* yields
            yield* Fiber.interrupt(caller)
          } else {
            yield* Effect.fork(Fiber.interrupt(caller))
            yield* yields
            yield* op.finish(Exit.succeed(1))
          }
          const exit = yield* Fiber.await(caller)
          yield* settle
          const s = yield* pool.stats
          assert.deepStrictEqual([s.inUse, s.total, s.waiting, t.opened[0].closes], [0, 0, 0, 1], `delay ${delay}`)
          outcomes.add(Exit.isSuccess(exit) ? "done" : Cause.isInterruptedOnly(exit.cause) ? "interrupted" : "failed")
          yield* pool.shutdown()
          assert.isTrue(t.opened.every((c) => c.closes === 1), `delay ${delay}`)
        }))
      }
      assert.isFalse(outcomes.has("failed"))
      assert.strictEqual(outcomes.size, 2) // both sides of the race were exercised
    }))

  it.scoped("a caller in an uninterruptible region keeps waiting through an interruption, and its operation runs", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
      const holder = yield* hold(pool)
      yield* Deferred.await(holder.got)
      const op = operation()
      const caller = yield* Effect.fork(Effect.uninterruptible(pool.withConnectionCallback(op.start)))
      yield* settle
      const interrupting = yield* Effect.fork(Fiber.interrupt(caller))
      yield* settle
      assert.deepStrictEqual([op.state.starts, (yield* pool.stats).waiting], [0, 1]) // still queued
      yield* holder.release
      yield* settle
      assert.strictEqual(op.state.starts, 1)
      yield* op.finish(Exit.succeed(1))
      yield* Fiber.join(interrupting)
      const s = yield* pool.stats
      assert.deepStrictEqual([op.state.cancels, s.inUse, s.idle, s.total, t.opened[0].closes], [0, 0, 1, 1, 0])
    }))

  it.scoped("a wait under a parent span is traced until the operation starts, not until it ends", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const native = yield* Effect.tracer
      const started: Array<string> = []
      const ended: Array<string> = []
      const tracer = Tracer.make({
        span: (...args) => {
          const span = native.span(...args)
          const end = span.end.bind(span)
          started.push(span.name)
          return Object.assign(span, {
            end: (endTime: bigint, exit: Exit.Exit<unknown, unknown>) => {
              ended.push(span.name)
              end(endTime, exit)
            }
          })
        },
        context: native.context
      })
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
      const holder = yield* hold(pool)
      yield* Deferred.await(holder.got)
      const op = operation()
      const waiter = yield* Effect.fork(
        pool.withConnectionCallback(op.start).pipe(Effect.withSpan("request"), Effect.withTracer(tracer))
      )
      yield* settle
      assert.deepStrictEqual(started, ["request", "ConnectionPool.acquire"])
      yield* holder.release
      yield* settle
      assert.deepStrictEqual(ended, ["ConnectionPool.acquire"]) // handed a connection: the wait is over
      yield* op.finish(Exit.succeed(1))
      yield* Fiber.join(waiter)
      assert.deepStrictEqual(ended, ["ConnectionPool.acquire", "request"])
    }))

  it.effect("is also a dual function and an accessor of a pool tag", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      class Db extends ConnectionPool.Tag("test/CallbackDb")<Db, Conn>() {}
      const id = (conn: Conn, done: (exit: Exit.Exit<number>) => void) => done(Exit.succeed(conn.id))
      const ids = yield* Effect.gen(function*() {
        const pool = yield* Db
        return [
          yield* ConnectionPool.withConnectionCallback(pool, id),
          yield* pool.pipe(ConnectionPool.withConnectionCallback(id)),
          yield* Db.withConnectionCallback(id)
        ]
      }).pipe(Effect.provide(Db.layer({ driver: t.driver })))
      assert.deepStrictEqual(ids, [1, 1, 1])
    }))

  it.scoped("fails with PoolClosed once the pool is shut down", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver })
      yield* pool.shutdown()
      const exit = yield* Effect.exit(pool.withConnectionCallback(operation().start))
      assert.deepStrictEqual(exit, Exit.fail(new PoolError.PoolClosed({ pool: "default" })))
    }))
})
