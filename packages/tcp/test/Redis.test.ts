import { Endpoint, TcpPool } from "@connection-pool/tcp"
import { assert, describe, it, layer } from "@effect/vitest"
import { Cause, Context, Effect, Exit, Fiber, Layer, Option, Schedule } from "effect"
import * as net from "node:net"
import { command, encode, protocol, send, tracked } from "./support/resp.js"
import { type Redis, redis } from "./support/servers.js"

class Server extends Context.Tag("test/Redis")<Server, Redis>() {}

const endpointOf = (r: Redis) => Endpoint.unsafeMake({ host: "127.0.0.1", port: r.port })

const stats = (pool: TcpPool.TcpPool, endpoint: Endpoint.Endpoint) =>
  Effect.map(pool.stats(endpoint), Option.getOrThrow)

/** Sockets the server sees from us: CLIENT LIST over a connection of the test's own. */
const clients = (r: Redis) =>
  Effect.promise(() =>
    new Promise<number>((resolve, reject) => {
      const s = net.connect(r.port, "127.0.0.1")
      let data = ""
      s.on("error", reject)
      s.on("connect", () => s.write("CLIENT LIST\r\n"))
      s.on("data", (d) => {
        data += d
        const m = /^\$(\d+)\r\n/.exec(data)
        if (m !== null && data.length >= m[0].length + Number(m[1])) {
          s.destroy()
          resolve(data.slice(m[0].length).trim().split("\n").length - 1) // minus this one
        }
      })
    })
  )

const killAll = (r: Redis) =>
  Effect.promise(() =>
    new Promise<void>((resolve, reject) => {
      const s = net.connect(r.port, "127.0.0.1")
      s.on("error", reject)
      s.on("connect", () => s.write("CLIENT KILL TYPE normal SKIPME yes\r\n"))
      s.on("data", () => {
        s.destroy()
        resolve()
      })
    })
  )

const settle = Effect.sleep("50 millis")

layer(Layer.scoped(Server, redis), { timeout: 30_000, excludeTestServices: true })("Redis", (it) => {
  it.scoped("PING, SET and GET through the pool", () =>
    Effect.gen(function*() {
      const r = yield* Server
      const pool = yield* TcpPool.make({ protocol })
      const ep = endpointOf(r)
      const replies = yield* pool.withConnection(ep, (conn) =>
        Effect.all([command(conn, "PING"), command(conn, "SET", "k", "v"), command(conn, "GET", "k")]))
      assert.deepStrictEqual(replies, ["PONG", "OK", "v"])
      assert.strictEqual(yield* pool.withConnection(`127.0.0.1:${r.port}`, (c) => command(c, "GET", "k")), "v")
      const s = yield* stats(pool, ep)
      assert.strictEqual(s.created, 1)
      assert.strictEqual(s.reused, 1)
    }))

  it.scoped("200 fibers share 5 connections: the limit holds, hits and misses add up", () =>
    Effect.gen(function*() {
      const r = yield* Server
      const pool = yield* TcpPool.make({ protocol, maxConnectionsPerEndpoint: 5 })
      const ep = endpointOf(r)
      const before = yield* clients(r)
      let peak = 0
      const results = yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) =>
        pool.withConnection(ep, (conn) =>
          Effect.gen(function*() {
            const s = yield* stats(pool, ep)
            peak = Math.max(peak, s.active)
            yield* tracked(conn, "SET", `k${i}`, String(i))
            return yield* tracked(conn, "GET", `k${i}`)
          })), { concurrency: "unbounded" })
      assert.deepStrictEqual(results, Array.from({ length: 200 }, (_, i) => String(i)))
      assert.isAtMost(peak, 5)
      const s = yield* stats(pool, ep)
      assert.strictEqual(s.created, 5)
      assert.strictEqual(s.acquired, 200)
      assert.strictEqual(s.reused, 195)
      assert.strictEqual((yield* clients(r)) - before, 5)
    }))

  it.scoped("a connection returned with a reply pending is closed, not reused", () =>
    Effect.gen(function*() {
      const r = yield* Server
      const pool = yield* TcpPool.make({ protocol })
      const ep = endpointOf(r)
      const first = yield* pool.withConnection(ep, (conn) => Effect.as(send(conn, "PING"), conn.id))
      const second = yield* pool.withConnection(ep, (conn) => Effect.as(tracked(conn, "PING"), conn.id))
      assert.notStrictEqual(first, second)
      // without the hook: the reply arrives while idle, and the unread bytes keep the connection from being lent
      const plain = yield* TcpPool.make({})
      const a = yield* plain.withConnection(ep, (conn) => Effect.as(conn.write("PING\r\n"), conn.id))
      yield* settle
      const b = yield* plain.withConnection(ep, (conn) => Effect.as(command(conn, "PING"), conn.id))
      assert.notStrictEqual(a, b)
      const s = yield* stats(plain, ep)
      assert.strictEqual(s.created, 2)
      assert.strictEqual(s.closed, 1)
    }))

  it.scoped("exchange: a request and its reply parsed off the socket, across chunks; an interrupted one closes", () =>
    Effect.gen(function*() {
      const r = yield* Server
      const pool = yield* TcpPool.make({})
      const ep = endpointOf(r)
      /** A whole RESP reply: a line, or a bulk string of the length the line gives. */
      const reply = (data: Buffer) => {
        const eol = data.indexOf("\r\n")
        if (eol === -1) return undefined
        if (data[0] !== 0x24) return [data.toString("utf8", 0, eol), eol + 2] as const
        const n = Number(data.toString("utf8", 1, eol))
        const end = eol + 2 + n + 2
        return data.length < end ? undefined : [data.toString("utf8", eol + 2, end - 2), end] as const
      }
      assert.strictEqual(yield* pool.exchange(ep, encode(["PING"]), reply), "+PONG")
      const big = "x".repeat(300_000)
      assert.strictEqual(yield* pool.exchange(ep, encode(["SET", "big", big]), reply), "+OK")
      assert.strictEqual((yield* pool.exchange(ep, encode(["GET", "big"]), reply)).length, big.length)
      assert.strictEqual(Option.getOrThrow(yield* pool.stats(ep)).created, 1)
      // BLPOP on an empty list never answers: interrupted, its connection is closed, not reused
      const blocked = yield* Effect.fork(pool.exchange(ep, encode(["BLPOP", "empty-list", "0"]), reply))
      yield* Effect.sleep("50 millis")
      yield* Fiber.interrupt(blocked)
      const s = Option.getOrThrow(yield* pool.stats(ep))
      assert.deepStrictEqual([s.closed, s.active], [1, 0])
      assert.strictEqual(yield* pool.exchange(ep, encode(["PING"]), reply), "+PONG")
    }))

  it.scoped("CLIENT KILL of pooled connections: detected at checkout and replaced", () =>
    Effect.gen(function*() {
      const r = yield* Server
      const pool = yield* TcpPool.make({ protocol, validationBypass: "1 hour" })
      const ep = endpointOf(r)
      const ping = pool.withConnection(ep, (c) => Effect.andThen(settle, tracked(c, "PING")))
      yield* Effect.forEach([1, 2, 3], () => ping, {
        concurrency: "unbounded"
      })
      assert.strictEqual((yield* stats(pool, ep)).idle, 3)
      yield* killAll(r)
      yield* settle
      const replies = yield* Effect.forEach([1, 2, 3], () => pool.withConnection(ep, (c) => tracked(c, "PING")), {
        concurrency: "unbounded"
      })
      assert.deepStrictEqual(replies, ["PONG", "PONG", "PONG"])
      const s = yield* stats(pool, ep)
      assert.strictEqual(s.closed, 3)
      assert.isAtLeast(s.created, 4)
    }))

  it.scoped("the server killed under load: typed failures for calls in flight, serving again after a restart", () =>
    Effect.gen(function*() {
      const r = yield* Server
      const pool = yield* TcpPool.make({ protocol, maxConnectionsPerEndpoint: 4, connectRetries: 0 })
      const ep = endpointOf(r)
      const load = Effect.forEach(Array.from({ length: 40 }, (_, i) => i), (i) =>
        Effect.exit(pool.withConnection(ep, (c) => tracked(c, "SET", `r${i}`, "x"))), { concurrency: 8 })
      assert.isTrue((yield* load).every(Exit.isSuccess))
      const during = yield* Effect.fork(
        Effect.forEach(Array.from({ length: 400 }, (_, i) => i), (i) =>
          Effect.exit(
            pool.withConnection(ep, (c) => Effect.andThen(Effect.sleep("1 millis"), tracked(c, "SET", `d${i}`, "x")))
          ),
          { concurrency: 8 })
      )
      yield* Effect.sleep("30 millis")
      yield* r.stop
      const exits = yield* during.await.pipe(Effect.flatten)
      const failures = exits.filter(Exit.isFailure)
      assert.isAbove(failures.length, 0)
      for (const exit of failures) {
        const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
        assert.isTrue(Option.isSome(error), "a typed failure, not a defect or an interruption")
        assert.include(["SocketError", "ConnectionFailed"], Option.getOrThrow(error)._tag)
      }
      yield* r.start
      const ping = pool.withConnection(ep, (c) => tracked(c, "PING"))
      // the endpoint's circuit breaker (the core's, on by default) may have opened: its probe reconnects within
      // one backoff, and until then callers fail at once with the typed error instead of each trying to connect
      yield* Effect.retry(ping, Schedule.spaced("50 millis").pipe(Schedule.upTo("5 seconds")))
      const after = yield* Effect.forEach([1, 2, 3, 4, 5, 6], () => ping, {
        concurrency: 3
      })
      assert.deepStrictEqual(after, ["PONG", "PONG", "PONG", "PONG", "PONG", "PONG"])
    }))
})

describe("Redis pool lifecycle", () => {
  it.live("closing the pool's scope closes every socket", () =>
    Effect.scoped(Effect.gen(function*() {
      const r = yield* redis
      const ep = endpointOf(r)
      const before = yield* clients(r)
      const sockets = yield* Effect.scoped(Effect.gen(function*() {
        const pool = yield* TcpPool.make({ protocol })
        const ping = pool.withConnection(ep, (c) => Effect.andThen(settle, tracked(c, "PING")))
        yield* Effect.forEach([1, 2, 3, 4], () => ping, {
          concurrency: "unbounded"
        })
        assert.strictEqual((yield* clients(r)) - before, 4)
        return (yield* pool.allStats).sockets
      }))
      assert.isAtLeast(sockets, 4)
      yield* settle
      assert.strictEqual((yield* clients(r)) - before, 0)
    })))
})
