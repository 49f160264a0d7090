import { Endpoint, TcpPool } from "@connection-pool/tcp"
import { assert, describe, it } from "@effect/vitest"
import { Config, ConfigProvider, Effect, Fiber, Layer, Logger, LogLevel, Metric, Option, TestClock } from "effect"
import { countingServer } from "./support/servers.js"

const live = (ms: number) => Effect.promise(() => new Promise((r) => setTimeout(r, ms)))

const eventually = (f: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 400 && !f(); i++) yield* live(5)
    assert.isTrue(f(), "condition not reached")
  })

const echo = (conn: import("@connection-pool/tcp").Connection.Connection, text: string) =>
  Effect.zipRight(conn.write(text), Effect.map(conn.read, (d) => Buffer.from(d).toString()))

const statsOf = (pool: TcpPool.TcpPool, ep: Endpoint.Input) => Effect.map(pool.stats(ep), Option.getOrThrow)

describe("TcpPool", () => {
  it.live("maxUses: a connection is closed after being lent that many times", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* countingServer
      const pool = yield* TcpPool.make({ maxUses: 2 })
      const ids = yield* Effect.forEach([1, 2, 3, 4, 5], () =>
        pool.withConnection(`127.0.0.1:${server.port}`, (c) => Effect.as(echo(c, "x"), c.id)))
      assert.strictEqual(new Set(ids).size, 3)
      assert.strictEqual((yield* statsOf(pool, `127.0.0.1:${server.port}`)).created, 3)
    })))

  it.live("maxIdlePerEndpoint: connections beyond it are closed as they come back", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* countingServer
      const ep = `127.0.0.1:${server.port}`
      const pool = yield* TcpPool.make({ maxIdlePerEndpoint: 1 })
      yield* Effect.forEach([1, 2, 3], () => pool.withConnection(ep, (c) => Effect.zipRight(live(20), echo(c, "x"))), {
        concurrency: "unbounded"
      })
      const stats = yield* statsOf(pool, ep)
      assert.deepStrictEqual([stats.created, stats.idle, stats.closed], [3, 1, 2])
      yield* eventually(() => server.open() === 1)
    })))

  it.scoped("an endpoint unused past endpointIdleTimeout is evicted with its connections (TestClock)", () =>
    Effect.gen(function*() {
      const server = yield* countingServer
      const ep = `127.0.0.1:${server.port}`
      const pool = yield* TcpPool.make({ endpointIdleTimeout: "1 minute", idleTimeout: "1 hour" })
      yield* pool.withConnection(ep, (c) => echo(c, "x"))
      yield* TestClock.adjust("50 seconds")
      assert.isTrue(Option.isSome(yield* pool.stats(ep)), "not yet")
      yield* TestClock.adjust("40 seconds")
      yield* eventually(() => server.open() === 0)
      assert.isTrue(Option.isNone(yield* pool.stats(ep)))
      // borrowing again makes a new pool for it
      assert.strictEqual(yield* pool.withConnection(ep, (c) => echo(c, "y")), "y")
      assert.strictEqual((yield* statsOf(pool, ep)).created, 1)
    }))

  it.scoped("an endpoint in use is never evicted", () =>
    Effect.gen(function*() {
      const server = yield* countingServer
      const ep = `127.0.0.1:${server.port}`
      const pool = yield* TcpPool.make({ endpointIdleTimeout: "1 minute" })
      const held = yield* Effect.fork(pool.withConnection(ep, (c) => Effect.zipRight(echo(c, "x"), Effect.never)))
      yield* eventually(() => server.open() === 1)
      yield* TestClock.adjust("10 minutes")
      yield* live(10)
      assert.isTrue(Option.isSome(yield* pool.stats(ep)))
      assert.strictEqual(server.open(), 1)
      yield* Fiber.interrupt(held)
    }))

  it.scoped("an exchange interrupted mid-reply gives its connection back: the endpoint is still evicted", () =>
    Effect.gen(function*() {
      const server = yield* countingServer
      const ep = `127.0.0.1:${server.port}`
      const pool = yield* TcpPool.make({ endpointIdleTimeout: "1 minute" })
      const line = (data: Buffer) => {
        const end = data.indexOf("\n")
        return end === -1 ? undefined : [data.toString("latin1", 0, end), end + 1] as const
      }
      assert.strictEqual(yield* pool.exchange(ep, "a\n", line), "a")
      // the echo server answers "b" with no end of line: the parser waits for more until the caller gives up
      const waiting = yield* Effect.fork(pool.exchange(ep, "b", line))
      yield* eventually(() => server.sockets.size === 1)
      yield* live(20)
      yield* Fiber.interrupt(waiting)
      yield* eventually(() => server.open() === 0)
      assert.strictEqual((yield* statsOf(pool, ep)).active, 0)
      yield* TestClock.adjust("2 minutes")
      yield* live(10)
      assert.isTrue(Option.isNone(yield* pool.stats(ep)), "evicted once unused")
    }))

  it.live("clearEndpoint closes idle connections now and busy ones when they come back", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* countingServer
      const ep = `127.0.0.1:${server.port}`
      const pool = yield* TcpPool.make({})
      const busy = yield* Effect.fork(pool.withConnection(ep, (c) => Effect.zipRight(echo(c, "busy"), live(150))))
      yield* eventually(() => server.open() === 1)
      yield* pool.withConnection(ep, (c) => echo(c, "idle"))
      assert.strictEqual(server.open(), 2)
      yield* pool.clearEndpoint(ep)
      yield* eventually(() => server.open() === 1)
      yield* Fiber.join(busy)
      yield* eventually(() => server.open() === 0)
      yield* pool.withConnection(ep, (c) => echo(c, "new"))
      const stats = yield* statsOf(pool, ep)
      assert.deepStrictEqual([stats.created, stats.closed], [3, 2])
    })))

  it.live("protocol hooks: onCreate once, onAcquire and onRelease per borrow, onClose once per connection", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* countingServer
      const ep = `127.0.0.1:${server.port}`
      const events: Array<string> = []
      const closes = new Map<number, number>()
      yield* Effect.scoped(Effect.gen(function*() {
        const pool = yield* TcpPool.make({
          protocol: {
            onCreate: (c) => Effect.map(echo(c, "hello"), (r) => void events.push(`create ${c.id} ${r}`)),
            onAcquire: (c) => Effect.sync(() => events.push(`acquire ${c.id} ${c.uses}`)),
            onRelease: (c) => Effect.sync(() => events.push(`release ${c.id}`)),
            onClose: (c) => Effect.sync(() => closes.set(c.id, (closes.get(c.id) ?? 0) + 1))
          }
        })
        const id = yield* pool.withConnection(ep, (c) => Effect.as(echo(c, "x"), c.id))
        yield* pool.withConnection(ep, (c) => echo(c, "x"))
        yield* Effect.scoped(pool.connection(ep))
        assert.deepStrictEqual(events, [
          `create ${id} hello`,
          `acquire ${id} 1`,
          `release ${id}`,
          `acquire ${id} 2`,
          `release ${id}`,
          `acquire ${id} 3`,
          `release ${id}`
        ])
      }))
      assert.deepStrictEqual([...closes.values()], [1])
    })))

  it.live("isHealthy false closes the connection; a failing onCreate is ConnectionFailed in the handshake phase", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* countingServer
      const ep = `127.0.0.1:${server.port}`
      const picky = yield* TcpPool.make({ protocol: { isHealthy: (c) => c.uses < 1 } })
      yield* picky.withConnection(ep, (c) => echo(c, "x"))
      yield* picky.withConnection(ep, (c) => echo(c, "x"))
      assert.strictEqual((yield* statsOf(picky, ep)).created, 2)
      const failing = yield* TcpPool.make({ protocol: { onCreate: () => Effect.fail("WRONGPASS") } })
      const error = yield* Effect.flip(failing.withConnection(ep, () => Effect.void))
      assert.strictEqual(error._tag, "ConnectionFailed")
      if (error._tag === "ConnectionFailed") {
        assert.deepStrictEqual([error.phase, error.lastError, error.attempts], ["handshake", "WRONGPASS", 1])
      }
      assert.strictEqual((yield* failing.allStats).sockets, 0)
    })))

  it.live("validate runs on checkout past validationBypass; a failed one replaces the connection", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* countingServer
      const ep = `127.0.0.1:${server.port}`
      let checks = 0
      const pool = yield* TcpPool.make({
        validationBypass: 0,
        protocol: { validate: (c) => Effect.sync(() => (checks++, c.uses < 2)) }
      })
      yield* pool.withConnection(ep, (c) => echo(c, "x"))
      yield* live(5)
      yield* pool.withConnection(ep, (c) => echo(c, "x"))
      yield* live(5)
      yield* pool.withConnection(ep, (c) => echo(c, "x"))
      assert.strictEqual(checks, 2)
      assert.strictEqual((yield* statsOf(pool, ep)).created, 2)
    })))

  it.live("a caller waiting past acquireTimeout gets PoolTimeout; after the scope, PoolClosed", () =>
    Effect.gen(function*() {
      const { pool, timeout } = yield* Effect.scoped(Effect.gen(function*() {
        const server = yield* countingServer
        const ep = `127.0.0.1:${server.port}`
        const pool = yield* TcpPool.make({ maxConnectionsPerEndpoint: 1, acquireTimeout: "100 millis" })
        const held = yield* Effect.fork(pool.withConnection(ep, () => Effect.never))
        yield* eventually(() => server.open() === 1)
        const timeout = yield* Effect.flip(pool.withConnection(ep, () => Effect.void))
        yield* Fiber.interrupt(held)
        return { pool, timeout }
      }))
      assert.strictEqual(timeout._tag, "PoolTimeout")
      const closed = yield* Effect.flip(pool.withConnection("127.0.0.1:1", () => Effect.void))
      assert.strictEqual(closed._tag, "PoolClosed")
    }))

  it.scoped("debug logs say when a connection is opened, reused and closed, and an endpoint evicted", () =>
    Effect.gen(function*() {
      const logs: Array<string> = []
      const logger = Logger.make(({ message }) => {
        logs.push(Array.isArray(message) ? message.join(" ") : String(message))
      })
      const server = yield* countingServer
      const ep = `127.0.0.1:${server.port}`
      yield* Effect.scoped(Effect.gen(function*() {
        const pool = yield* TcpPool.make({ endpointIdleTimeout: "1 minute" })
        yield* pool.withConnection(ep, (c) => echo(c, "x"))
        yield* pool.withConnection(ep, (c) => echo(c, "x"))
        yield* TestClock.adjust("2 minutes")
        yield* eventually(() => server.open() === 0)
      })).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)), Logger.withMinimumLogLevel(LogLevel.Debug))
      const has = (re: RegExp) =>
        assert.isTrue(logs.some((l) => re.test(l)), `no log matching ${re}: ${logs.join(" | ")}`)
      has(/^connection \d+ opened to 127\.0\.0\.1$/)
      has(/^connection reused \d+$/)
      has(/^connection \d+ closed$/)
      has(/^endpoint 127\.0\.0\.1:\d+ evicted/)
    }))

  it.scoped("a bad endpoint is InvalidEndpoint, from every entry point", () =>
    Effect.gen(function*() {
      const pool = yield* TcpPool.make({})
      const errors = [
        yield* Effect.flip(pool.withConnection("localhost:0", () => Effect.void)),
        yield* Effect.flip(pool.connection({ host: "bad host", port: 80 })),
        yield* Effect.flip(pool.stats("nope")),
        yield* Effect.flip(pool.clearEndpoint("https://:pw@"))
      ]
      assert.deepStrictEqual(errors.map((e) => e._tag), Array(4).fill("InvalidEndpoint"))
      assert.include(errors[0].message, "1 to 65535")
    }))

  it.effect("options out of range are InvalidConfig naming the option", () =>
    Effect.gen(function*() {
      const bad = [
        [{ maxConnectionsPerEndpoint: 0 }, "maxConnectionsPerEndpoint"],
        [{ maxConnections: 1.5 }, "maxConnections"],
        [{ maxUses: 0 }, "maxUses"],
        [{ idleTimeout: "soon" as never }, "idleTimeout"],
        [{ connectTimeout: 0 }, "connectTimeout"],
        [{ connectBackoff: "2 seconds", connectBackoffMax: "1 second" }, "connectBackoffMax"],
        [{ connectRetries: -1 }, "connectRetries"],
        [{ validationBypass: -1 }, "validationBypass"], // not clamped to zero, as effect's Duration would
        [{ shutdownTimeout: Number.NaN }, "shutdownTimeout"]
      ] as const
      for (const [options, option] of bad) {
        const error = yield* Effect.flip(Effect.scoped(TcpPool.make(options)))
        assert.strictEqual(error.option, option)
      }
    }))

  it.live("layerConfig reads every option from Config", () =>
    Effect.gen(function*() {
      const stats = yield* Effect.scoped(Effect.gen(function*() {
        const server = yield* countingServer
        const ep = `127.0.0.1:${server.port}`
        yield* TcpPool.withConnection(ep, (c) => echo(c, "x"))
        return yield* TcpPool.stats(ep)
      })).pipe(
        Effect.provide(
          TcpPool.layerConfig({
            name: Config.string("NAME"),
            maxConnectionsPerEndpoint: Config.integer("MAX"),
            acquireTimeout: Config.duration("ACQUIRE_TIMEOUT")
          }).pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([
            ["NAME", "cache"],
            ["MAX", "3"],
            ["ACQUIRE_TIMEOUT", "2 seconds"]
          ])))))
        )
      )
      assert.strictEqual(Option.getOrThrow(stats).maxSize, 3)
    }))

  it.live("metrics are tagged with server.address and server.port", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* countingServer
      const pool = yield* TcpPool.make({ name: "metrics-test" })
      yield* pool.withConnection(`127.0.0.1:${server.port}`, (c) => echo(c, "x"))
      yield* pool.withConnection(`127.0.0.1:${server.port}`, (c) => echo(c, "x"))
      const snapshot = yield* Metric.snapshot
      const ours = snapshot.filter((m) =>
        m.metricKey.tags.some((t) => t.key === "server.port" && t.value === String(server.port))
      )
      const value = (name: string) =>
        (ours.find((m) => m.metricKey.name === name)?.metricState as { count?: number } | undefined)?.count
      assert.strictEqual(value("tcp.client.connection.created"), 1)
      assert.strictEqual(value("tcp.client.connection.reused"), 1)
      const tags = ours[0].metricKey.tags.map((t) => `${t.key}=${t.value}`)
      assert.includeMembers(tags, ["server.address=127.0.0.1", "db.client.connection.pool.name=metrics-test"])
    })))
})
