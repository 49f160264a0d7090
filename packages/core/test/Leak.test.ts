import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, FiberId, HashMap, Logger, Metric, Scope } from "effect"
import { ConnectionPool } from "../src/index.js"
import { adjust, eventually, hold, makeDriver, settle } from "./utils.js"

// Leak detection: a borrow held past `leakDetectionThreshold` is reported once, with who holds it; its return is
// reported too. Nothing is closed for it.

interface Line {
  readonly level: string
  readonly message: string
  readonly annotations: Record<string, unknown>
}

/** Runs `effect` with its log lines (and those of fibers it forks, the pool's included) captured. */
const logged = <A, E, R>(f: (lines: Array<Line>) => Effect.Effect<A, E, R>) => {
  const lines: Array<Line> = []
  const logger = Logger.make(({ annotations, logLevel, message }) => {
    const text = Array.isArray(message) ? message.join(" ") : String(message)
    lines.push({ level: logLevel.label, message: text, annotations: Object.fromEntries(HashMap.toEntries(annotations)) })
  })
  return f(lines).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
}

const leakCount = (pool: string) =>
  (Metric.unsafeSnapshot().find((m) =>
    m.metricKey.name === "connection_pool.leaks" &&
    m.metricKey.tags.some((tag) => tag.key === "db.client.connection.pool.name" && tag.value === pool)
  )?.metricState as { count: number } | undefined)?.count ?? 0

const warnings = (lines: Array<Line>) => lines.filter((l) => l.level === "WARN")

describe("leak detection", () => {
  it.scoped("a borrow held past the threshold: one warning naming pool, time, fiber, span and its stack; not closed", () =>
    logged((lines) =>
      Effect.gen(function*() {
        const t = makeDriver()
        const pool = yield* ConnectionPool.make({ driver: t.driver, name: "leaky", leakDetectionThreshold: "5 seconds" })
        const release = yield* Deferred.make<void>()
        const borrowed = yield* Deferred.make<FiberId.FiberId>()
        const fiber = yield* pool.withConnection(() =>
          Effect.zipRight(Effect.flatMap(Effect.fiberId, (id) => Deferred.succeed(borrowed, id)), Deferred.await(release))
        ).pipe(Effect.withSpan("checkout"), Effect.fork)
        const id = FiberId.threadName(yield* Deferred.await(borrowed))
        yield* adjust("4 seconds")
        assert.strictEqual(warnings(lines).length, 0)
        yield* adjust("1 second")
        const [warning] = warnings(lines)
        assert.isDefined(warning)
        assert.match(warning.message, /^connection leak suspected: pool "leaky" lent a connection to fiber #\d+/)
        assert.include(warning.message, `fiber ${id} in span "checkout" 5s ago`)
        assert.include(warning.message, "leakDetectionThreshold 5s")
        assert.include(warning.message, "it stays open")
        assert.strictEqual(warning.annotations.pool, "leaky")
        assert.strictEqual(warning.annotations.fiberId, id)
        assert.strictEqual(warning.annotations.heldMs, 5000)
        assert.strictEqual(warning.annotations.span, "checkout")
        assert.match(String(warning.annotations.stack), /^at checkout \(.*Leak\.test\.ts:\d+:\d+\)/)
        let s = yield* pool.stats
        assert.deepStrictEqual([s.leaksSuspected, s.leaked, s.inUse], [1, 1, 1])
        assert.strictEqual(leakCount("leaky"), 1)
        assert.strictEqual(t.opened[0].closes, 0) // never closed for it

        yield* adjust("1 minute")
        assert.strictEqual(warnings(lines).length, 1) // reported once

        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(fiber)
        const back = lines.find((l) => l.message.startsWith("previously reported leaked connection"))
        assert.isDefined(back)
        assert.strictEqual(back!.level, "INFO")
        assert.strictEqual(
          back!.message,
          `previously reported leaked connection of pool "leaky" was returned by fiber ${id} after 1m 5s`
        )
        s = yield* pool.stats
        assert.deepStrictEqual([s.leaksSuspected, s.leaked, s.inUse, s.idle], [1, 0, 0, 1])
        assert.strictEqual(t.opened[0].closes, 0)
      })
    ))

  it.scoped("borrows shorter than the threshold are never reported, however many", () =>
    logged((lines) =>
      Effect.gen(function*() {
        const pool = yield* ConnectionPool.make({ driver: makeDriver().driver, leakDetectionThreshold: "1 second" })
        for (let i = 0; i < 5; i++) {
          yield* pool.withConnection(() => Effect.sleep("900 millis")).pipe(Effect.fork, Effect.tap(() => adjust("900 millis")), Effect.flatMap(Fiber.join))
        }
        yield* adjust("10 seconds")
        assert.strictEqual(warnings(lines).length, 0)
        assert.strictEqual((yield* pool.stats).leaksSuspected, 0)
      })
    ))

  it.scoped("off by default: a borrow held for an hour logs nothing", () =>
    logged((lines) =>
      Effect.gen(function*() {
        const pool = yield* ConnectionPool.make({ driver: makeDriver().driver })
        const holder = yield* hold(pool)
        yield* Deferred.await(holder.got)
        yield* adjust("1 hour")
        assert.strictEqual(warnings(lines).length, 0)
        assert.strictEqual((yield* pool.stats).leaksSuspected, 0)
        yield* holder.release
      })
    ))

  it.scoped("a scoped borrow whose scope is never closed: the report says its fiber has ended", () =>
    logged((lines) =>
      Effect.gen(function*() {
        const pool = yield* ConnectionPool.make({ driver: makeDriver().driver, leakDetectionThreshold: "30 seconds" })
        const forgotten = yield* Scope.make()
        yield* Fiber.join(yield* Effect.fork(Scope.extend(pool.get, forgotten)))
        yield* adjust("30 seconds")
        const [warning] = warnings(lines)
        assert.include(warning.message, "that fiber has ended, so the scope it borrowed into was never closed")
        yield* Scope.close(forgotten, Exit.void)
        assert.deepStrictEqual([(yield* pool.stats).leaked, (yield* pool.stats).idle], [0, 1])
      })
    ))

  it.scoped("withConnectionCallback: an operation that never ends is reported as its caller's", () =>
    logged((lines) =>
      Effect.gen(function*() {
        const pool = yield* ConnectionPool.make({
          driver: makeDriver().driver,
          maxSize: 1,
          leakDetectionThreshold: "2 seconds"
        })
        const holder = yield* hold(pool)
        yield* Deferred.await(holder.got)
        // waits, so the release below starts its operation, in the releasing fiber
        const caller = yield* Effect.fork(pool.withConnectionCallback<void, never>(() => {}).pipe(Effect.withSpan("stuck")))
        yield* settle
        yield* holder.release
        yield* eventually(pool.stats, (s) => s.waiting === 0)
        yield* adjust("2 seconds")
        const reports = warnings(lines)
        assert.strictEqual(reports.length, 1)
        assert.strictEqual(reports[0].annotations.fiberId, FiberId.threadName(caller.id()))
        assert.strictEqual(reports[0].annotations.span, "stuck")
        yield* Fiber.interrupt(caller)
        assert.strictEqual((yield* pool.stats).leaked, 0)
      })
    ))

  it.effect("leakDetectionThreshold: zero or negative is InvalidConfig; Duration.infinity is off", () =>
    Effect.gen(function*() {
      for (const bad of [0, -1, "-5 seconds"] as const) {
        const error = yield* Effect.flip(Effect.scoped(ConnectionPool.make({
          driver: makeDriver().driver,
          leakDetectionThreshold: bad
        })))
        assert.strictEqual(error._tag, "InvalidConfig")
        assert.strictEqual(error.option, "leakDetectionThreshold")
      }
      const off = yield* Effect.scoped(Effect.flatMap(
        ConnectionPool.make({ driver: makeDriver().driver, leakDetectionThreshold: Duration.infinity }),
        (pool) => pool.stats
      ))
      assert.strictEqual(off.leaksSuspected, 0)
    }))
})
