import { Endpoint, TcpError, TcpPool } from "@connection-pool/tcp"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Clock, Duration, Effect, Exit, Fiber, Option, TestClock } from "effect"
import { blackhole, countingServer, refusedPort } from "./support/servers.js"

const live = (ms: number) => Effect.promise(() => new Promise((r) => setTimeout(r, ms)))

/** Polls, on the real clock, until `f` holds. */
const eventually = (f: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 400 && !f(); i++) yield* live(5)
    assert.isTrue(f(), "condition not reached")
  })

const failure = <A, E>(exit: Exit.Exit<A, E>): E => {
  assert.isTrue(Exit.isFailure(exit))
  return Option.getOrThrow(Cause.failureOption((exit as Exit.Failure<A, E>).cause))
}

describe("connect failures", () => {
  it.live("an unknown host is DnsResolutionFailed, at once and not retried", () =>
    Effect.gen(function*() {
      const pool = yield* TcpPool.make({ connectRetries: 3 })
      const error = failure(yield* Effect.exit(pool.withConnection("no-such-host.invalid:80", () => Effect.void)))
      assert.strictEqual(error._tag, "DnsResolutionFailed")
      const dns = error as TcpError.DnsResolutionFailed
      assert.deepStrictEqual([dns.hostname, dns.code, dns.attempts], ["no-such-host.invalid", "ENOTFOUND", 1])
      assert.include(dns.message, "could not resolve no-such-host.invalid")
    }).pipe(Effect.scoped))

  it.live("a refused port is ConnectionFailed with its attempts and last error", () =>
    Effect.gen(function*() {
      const port = yield* refusedPort
      const pool = yield* TcpPool.make({ connectRetries: 2, connectBackoff: "1 millis", connectBackoffMax: "2 millis" })
      const error = failure(yield* Effect.exit(pool.withConnection(`127.0.0.1:${port}`, () => Effect.void)))
      assert.strictEqual(error._tag, "ConnectionFailed")
      const failed = error as TcpError.ConnectionFailed
      assert.strictEqual(failed.attempts, 3)
      assert.strictEqual((failed.lastError as { code: string }).code, "ECONNREFUSED")
      assert.include(failed.message, `could not connect to 127.0.0.1:${port}`)
      assert.include(failed.message, "after 3 attempts")
      const stats = Option.getOrThrow(yield* pool.stats(`127.0.0.1:${port}`))
      assert.strictEqual(stats.errors, 3)
      assert.strictEqual((yield* pool.allStats).sockets, 0)
    }).pipe(Effect.scoped))

  it.live("every address of a name is tried in turn", () =>
    Effect.gen(function*() {
      const server = yield* countingServer
      const lookups: Array<string> = []
      const pool = yield* TcpPool.make({
        connectRetries: 0,
        // 127.0.0.2 is loopback too, with nothing listening on the port: refused
        resolver: (host) => Effect.sync(() => (lookups.push(host), ["127.0.0.2", "127.0.0.1"]))
      })
      const address = yield* pool.withConnection(`db.test:${server.port}`, (conn) => Effect.succeed(conn.address))
      assert.strictEqual(address, "127.0.0.1")
      assert.deepStrictEqual(lookups, ["db.test"])
    }).pipe(Effect.scoped))

  it.live("a listener that never accepts: ConnectionTimeout after connectTimeout, nothing left open", () =>
    Effect.gen(function*() {
      const port = yield* blackhole
      const pool = yield* TcpPool.make({ connectTimeout: "150 millis", connectRetries: 1, connectBackoff: "1 millis" })
      const start = Date.now()
      const error = failure(yield* Effect.exit(pool.withConnection(`127.0.0.1:${port}`, () => Effect.void)))
      assert.strictEqual(error._tag, "ConnectionTimeout")
      const timeout = error as TcpError.ConnectionTimeout
      assert.deepStrictEqual([timeout.phase, timeout.attempts], ["connect", 2])
      assert.isTrue(Duration.equals(timeout.timeout, Duration.millis(150)))
      assert.isAtLeast(Date.now() - start, 290)
      assert.strictEqual((yield* pool.allStats).sockets, 0)
    }).pipe(Effect.scoped))

  it.scoped("retries back off exponentially with jitter, on the Clock", () =>
    Effect.gen(function*() {
      const port = yield* refusedPort
      const starts: Array<number> = []
      const pool = yield* TcpPool.make({
        connectRetries: 3,
        connectBackoff: "1 second",
        connectBackoffMax: "10 seconds",
        resolver: () => Effect.map(Clock.currentTimeMillis, (now) => (starts.push(now), ["127.0.0.1"]))
      })
      const fiber = yield* Effect.fork(Effect.exit(pool.withConnection(`svc.test:${port}`, () => Effect.void)))
      yield* eventually(() => starts.length === 1)
      // the clock moves in 50 ms steps; after each, any attempt it started has failed (on real sockets) before the
      // next step, so that its backoff starts at the clock time of its attempt
      const failed = () =>
        Effect.runSync(pool.stats(`svc.test:${port}`)).pipe(Option.map((s) => s.errors), Option.getOrElse(() => 0))
      for (let t = 0; t < 8000 && starts.length < 4; t += 50) {
        yield* TestClock.adjust(50)
        yield* eventually(() => failed() === starts.length)
      }
      assert.strictEqual(starts.length, 4, "one attempt and three retries")
      // each delay is uniform in [d / 2, d], d = 1 s, 2 s, 4 s
      for (const [k, d] of [[1, 1000], [2, 2000], [3, 4000]] as const) {
        const gap = starts[k] - starts[k - 1]
        assert.isAtLeast(gap, d / 2, `retry ${k} waited ${gap} ms`)
        assert.isAtMost(gap, d + 50, `retry ${k} waited ${gap} ms`)
      }
      const error = failure(yield* Fiber.join(fiber)) as TcpError.ConnectionFailed
      assert.strictEqual(error._tag, "ConnectionFailed")
      assert.strictEqual(error.attempts, 4)
    }))

  it.live("a caller interrupted while connecting leaks nothing", () =>
    Effect.scoped(Effect.gen(function*() {
      const port = yield* blackhole
      const sockets = yield* Effect.scoped(Effect.gen(function*() {
        const pool = yield* TcpPool.make({ connectTimeout: "30 seconds" })
        const fiber = yield* Effect.fork(pool.withConnection(`127.0.0.1:${port}`, () => Effect.void))
        yield* eventually(() => pool.allStats.pipe(Effect.runSync).sockets === 1)
        yield* Fiber.interrupt(fiber)
        const stats = Option.getOrThrow(yield* pool.stats(`127.0.0.1:${port}`))
        assert.strictEqual(stats.waiting, 0)
        return pool
      }))
      // the scope closed: the connect still in flight was cancelled and its socket closed
      assert.strictEqual((yield* sockets.allStats).sockets, 0)
    })))

  it.live("a caller interrupted while waiting leaks nothing; the connection serves the next", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* countingServer
      const ep = Endpoint.unsafeMake(`127.0.0.1:${server.port}`)
      yield* Effect.scoped(Effect.gen(function*() {
        const pool = yield* TcpPool.make({ maxConnectionsPerEndpoint: 1 })
        const holder = yield* Effect.fork(pool.withConnection(ep, () => live(100)))
        yield* eventually(() => server.open() === 1)
        const waiter = yield* Effect.fork(pool.withConnection(ep, () => Effect.void))
        yield* live(10)
        assert.strictEqual(Option.getOrThrow(yield* pool.stats(ep)).waiting, 1)
        yield* Fiber.interrupt(waiter)
        yield* Fiber.join(holder)
        const stats = Option.getOrThrow(yield* pool.stats(ep))
        assert.deepStrictEqual([stats.waiting, stats.active, stats.idle, stats.created], [0, 0, 1, 1])
        yield* pool.withConnection(ep, () => Effect.void)
        assert.strictEqual(Option.getOrThrow(yield* pool.stats(ep)).reused, 1)
      }))
      yield* eventually(() => server.open() === 0)
    })))
})
