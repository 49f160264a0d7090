import { TcpPool } from "@connection-pool/tcp"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, FastCheck as fc, Fiber } from "effect"
import { countingServer } from "./support/servers.js"

// Random schedules of borrows over three real endpoints (hold, fail, die, be interrupted, invalidate, leave a
// reply unread, or an `exchange` that completes or is interrupted waiting for its reply) with clears, under random
// limits. After every run: the caps held at every moment (counted by
// the protocol hooks, on our side), every borrower finished, every socket was closed exactly once, none is open.

type Outcome = "ok" | "fail" | "die" | "interrupt" | "invalidate" | "unread" | "exchange" | "exchangeStuck"

const borrow = fc.record({
  endpoint: fc.nat(2),
  delay: fc.nat(15),
  hold: fc.nat(10),
  outcome: fc.constantFrom<Outcome>(
    "ok",
    "ok",
    "ok",
    "fail",
    "die",
    "interrupt",
    "invalidate",
    "unread",
    "exchange",
    "exchangeStuck"
  ),
  clear: fc.boolean().map((b) => b && Math.random() < 0.15)
})

const scenario = fc.record({
  borrows: fc.array(borrow, { minLength: 1, maxLength: 40 }),
  perEndpoint: fc.integer({ min: 1, max: 3 }),
  maxConnections: fc.constantFrom(1, 2, 4, Infinity),
  maxIdle: fc.integer({ min: 0, max: 3 }),
  maxUses: fc.constantFrom(1, 3, Infinity)
})

/** The echo of "ping"; with `stuck`, a reply that never completes (the caller is interrupted waiting). */
const echoed = (stuck: boolean) => (data: Buffer) =>
  !stuck && data.length >= 4 ? [data.toString("latin1", 0, 4), 4] as const : undefined

const live = (ms: number) => Effect.promise(() => new Promise((r) => setTimeout(r, ms)))

class Boom {
  readonly _tag = "Boom"
}

describe("TcpPool properties", () => {
  it.live.prop("caps hold, every socket closes exactly once, none is left open", { scenario }, ({ scenario }) =>
    Effect.scoped(Effect.gen(function*() {
      const servers = [yield* countingServer, yield* countingServer, yield* countingServer]
      const open = [0, 0, 0]
      const peaks = [0, 0, 0]
      let total = 0
      let peak = 0
      const closes = new Map<number, number>()
      const portIndex = new Map(servers.map((s, i) => [s.port, i]))
      const sockets = yield* Effect.scoped(Effect.gen(function*() {
        const pool = yield* TcpPool.make({
          maxConnectionsPerEndpoint: scenario.perEndpoint,
          maxConnections: scenario.maxConnections,
          maxIdlePerEndpoint: scenario.maxIdle,
          maxUses: scenario.maxUses,
          acquireTimeout: "20 seconds",
          protocol: {
            onCreate: (c) =>
              Effect.sync(() => {
                const i = portIndex.get(c.endpoint.port)!
                peaks[i] = Math.max(peaks[i], ++open[i])
                peak = Math.max(peak, ++total)
                closes.set(c.id, 0)
              }),
            onClose: (c) =>
              Effect.sync(() => {
                open[portIndex.get(c.endpoint.port)!]--
                total--
                closes.set(c.id, closes.get(c.id)! + 1)
              })
          }
        })
        const fibers = yield* Effect.forEach(scenario.borrows, (b) => {
          const ep = `127.0.0.1:${servers[b.endpoint].port}`
          const borrow = pool.withConnection(ep, (conn) =>
            Effect.gen(function*() {
              yield* conn.write("ping")
              if (b.outcome !== "unread") yield* conn.read
              yield* live(b.hold)
              if (b.outcome === "invalidate") conn.invalidate()
              if (b.outcome === "fail") return yield* Effect.fail(new Boom())
              if (b.outcome === "die") return yield* Effect.die("boom")
              if (b.outcome === "interrupt") return yield* Effect.never
            }))
          const use = b.outcome === "exchange" || b.outcome === "exchangeStuck"
            ? pool.exchange(ep, "ping", echoed(b.outcome === "exchangeStuck"))
            : borrow
          const run = Effect.zipRight(live(b.delay), b.clear ? Effect.zipRight(pool.clearEndpoint(ep), use) : use)
          const interrupted = b.outcome === "interrupt" || b.outcome === "exchangeStuck"
          return Effect.fork(interrupted ? Effect.timeout(run, b.delay + b.hold + 5) : run)
        })
        for (const fiber of fibers) {
          const exit = yield* Fiber.await(fiber).pipe(
            Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("a borrower never finished") })
          )
          if (Exit.isFailure(exit)) {
            const failure = Cause.failureOption(exit.cause)
            const expected = Cause.isDie(exit.cause) ||
              (failure._tag === "Some" && ["Boom", "TimeoutException"].includes(failure.value._tag))
            assert.isTrue(expected, `unexpected failure: ${Cause.pretty(exit.cause)}`)
          }
        }
        return pool
      }))
      assert.isAtMost(Math.max(...peaks), scenario.perEndpoint, "per-endpoint cap")
      assert.isAtMost(peak, scenario.maxConnections, "global cap")
      for (const [id, n] of closes) assert.strictEqual(n, 1, `connection ${id} closed ${n} times`)
      assert.strictEqual(total, 0)
      assert.strictEqual((yield* sockets.allStats).sockets, 0, "sockets left open by the pool")
      for (let i = 0; i < 200 && servers.some((s) => s.open() > 0); i++) yield* live(5)
      assert.deepStrictEqual(servers.map((s) => s.open()), [0, 0, 0], "sockets the servers still see")
    })), { timeout: 120_000, fastCheck: { numRuns: Number(process.env.TCP_PROP_RUNS ?? 25) } })
})
