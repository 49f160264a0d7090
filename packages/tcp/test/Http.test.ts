import { Endpoint, TcpPool } from "@connection-pool/tcp"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { get } from "./support/http.js"
import { httpServer } from "./support/servers.js"

const live = (ms: number) => Effect.promise(() => new Promise((r) => setTimeout(r, ms)))

describe("HTTP/1.1 keep-alive", () => {
  it.live("a socket the server closed while idle (keepAliveTimeout) is never lent", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* httpServer(150)
      const ep = Endpoint.unsafeMake(`127.0.0.1:${server.port}`)
      const pool = yield* TcpPool.make({ validationBypass: "1 hour" })
      const first = yield* pool.withConnection(ep, (conn) => Effect.map(get(conn), (r) => [r.body, conn.id] as const))
      assert.strictEqual(first[0], "ok")
      const again = yield* pool.withConnection(ep, (conn) => Effect.map(get(conn), () => conn.id))
      assert.strictEqual(again, first[1], "reused while the server keeps it")
      // node's server enforces keepAliveTimeout with a granularity of about a second
      for (let i = 0; i < 300 && server.open() > 0; i++) yield* live(10)
      assert.strictEqual(server.open(), 0, "the server closed it")
      yield* live(10)
      const after = yield* pool.withConnection(ep, (conn) => Effect.map(get(conn), (r) => [r.body, conn.id] as const))
      assert.strictEqual(after[0], "ok")
      assert.notStrictEqual(after[1], first[1])
      const stats = Option.getOrThrow(yield* pool.stats(ep))
      assert.deepStrictEqual([stats.created, stats.closed, stats.reused], [2, 1, 1])
    })))

  it.live("two endpoints keep their own limits, and the global cap holds across them", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* httpServer(5000)
      const b = yield* httpServer(5000)
      // counted on our side: the server sees a close a moment after we made it, and may overlap the next connect
      const open = new Map<number, number>()
      const peaks = new Map<number, number>()
      let total = 0
      let peak = 0
      const pool = yield* TcpPool.make({
        maxConnectionsPerEndpoint: 2,
        maxConnections: 3,
        protocol: {
          onCreate: (conn) =>
            Effect.sync(() => {
              const n = (open.get(conn.endpoint.port) ?? 0) + 1
              open.set(conn.endpoint.port, n)
              peaks.set(conn.endpoint.port, Math.max(n, peaks.get(conn.endpoint.port) ?? 0))
              peak = Math.max(peak, ++total)
            }),
          onClose: (conn) =>
            Effect.sync(() => {
              open.set(conn.endpoint.port, open.get(conn.endpoint.port)! - 1)
              total--
            })
        }
      })
      const calls = Array.from({ length: 60 }, (_, i) => `127.0.0.1:${i % 2 === 0 ? a.port : b.port}`)
      const body = (ep: string) => pool.withConnection(ep, (conn) => Effect.map(get(conn), (r) => r.body))
      const bodies = yield* Effect.forEach(calls, body, {
        concurrency: "unbounded"
      })
      assert.isTrue(bodies.every((b) => b === "ok"))
      assert.isAtMost(peaks.get(a.port)!, 2)
      assert.isAtMost(peaks.get(b.port)!, 2)
      assert.strictEqual(peak, 3)
      const stats = yield* pool.allStats
      assert.isAtMost(stats.connections, 3)
      assert.strictEqual(stats.maxConnections, 3)
      assert.strictEqual(stats.waitingForRoom, 0)
    })))

  it.live("under the global cap, an idle connection of another endpoint makes room", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* httpServer(5000)
      const b = yield* httpServer(5000)
      const pool = yield* TcpPool.make({ maxConnections: 1 })
      yield* pool.withConnection(`127.0.0.1:${a.port}`, get)
      assert.strictEqual(a.open(), 1)
      yield* pool.withConnection(`127.0.0.1:${b.port}`, get)
      yield* live(20)
      assert.deepStrictEqual([a.open(), b.open()], [0, 1])
    })))
})
