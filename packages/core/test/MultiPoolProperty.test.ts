import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, FastCheck as fc, Fiber, TestClock } from "effect"
import { MultiPool } from "../src/index.js"
import { type Conn, makeDriver, settle } from "./utils.js"

// Random schedules over three servers: borrows, releases, interruptions, invalidations, outages of single servers,
// health marks and time, with the invariants checked after every step against what the drivers saw.

type Command =
  | { readonly _tag: "Get" }
  | { readonly _tag: "TryGet" }
  | { readonly _tag: "Release"; readonly k: number }
  | { readonly _tag: "Interrupt"; readonly k: number }
  | { readonly _tag: "Invalidate"; readonly k: number }
  | { readonly _tag: "Advance"; readonly millis: number }
  | { readonly _tag: "Outage"; readonly server: number; readonly down: boolean }
  | { readonly _tag: "Mark"; readonly server: number; readonly healthy: boolean }

const command: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: fc.constant({ _tag: "Get" } as const), weight: 6 },
  { arbitrary: fc.constant({ _tag: "TryGet" } as const), weight: 1 },
  { arbitrary: fc.nat(20).map((k) => ({ _tag: "Release", k }) as const), weight: 5 },
  { arbitrary: fc.nat(20).map((k) => ({ _tag: "Interrupt", k }) as const), weight: 2 },
  { arbitrary: fc.nat(20).map((k) => ({ _tag: "Invalidate", k }) as const), weight: 1 },
  { arbitrary: fc.integer({ min: 1, max: 6_000 }).map((millis) => ({ _tag: "Advance", millis }) as const), weight: 3 },
  {
    arbitrary: fc.record({ server: fc.nat(2), down: fc.boolean() }).map((o) => ({ _tag: "Outage", ...o }) as const),
    weight: 2
  },
  {
    arbitrary: fc.record({ server: fc.nat(2), healthy: fc.boolean() }).map((o) => ({ _tag: "Mark", ...o }) as const),
    weight: 1
  }
)

interface Actor {
  state: "waiting" | "holding" | "done"
  conn: Conn | undefined
  readonly release: Deferred.Deferred<void>
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
}

const scenario = fc.record({
  commands: fc.array(command, { minLength: 1, maxLength: 40 }),
  connectDelay: fc.constantFrom(0, 100),
  maxSize: fc.integer({ min: 1, max: 3 }),
  selection: fc.constantFrom("round-robin" as const, "random" as const, "least-in-use" as const),
  whenAllBanned: fc.constantFrom("unban" as const, "fail" as const)
})

describe("MultiPool properties", () => {
  it.effect.prop("no connection is lent twice and each is closed once", { scenario }, ({ scenario }) =>
    Effect.scoped(Effect.gen(function*() {
      const drivers = [0, 1, 2].map(() =>
        makeDriver(scenario.connectDelay > 0 ? { connectDelay: `${scenario.connectDelay} millis` } : {})
      )
      const pool = yield* MultiPool.make({
        servers: drivers.map((t, i) => ({ name: `s${i}`, driver: t.driver })),
        maxSizePerServer: scenario.maxSize,
        selection: scenario.selection,
        whenAllBanned: scenario.whenAllBanned,
        acquireTimeout: "2 seconds",
        connectTimeout: "1 second",
        banAfter: 2,
        banTime: "3 seconds"
      })
      const actors: Array<Actor> = []
      const spawn = (kind: "get" | "tryGet") =>
        Effect.gen(function*() {
          const release = yield* Deferred.make<void>()
          const actor: Actor = { state: "waiting", conn: undefined, release, fiber: undefined }
          actors.push(actor)
          actor.fiber = yield* Effect.fork(
            Effect.scoped(Effect.gen(function*() {
              const conn = yield* (kind === "get" ? pool.get : pool.tryGet)
              assert.strictEqual(actor.state, "waiting")
              actor.state = "holding"
              actor.conn = conn
              yield* Deferred.await(actor.release)
            })).pipe(Effect.ensuring(Effect.sync(() => {
              actor.state = "done"
            })))
          )
        })
      const pick = (state: Actor["state"], k: number) => {
        const candidates = actors.filter((a) => a.state === state)
        return candidates.length === 0 ? undefined : candidates[k % candidates.length]
      }
      const check = (stats: MultiPool.MultiStats, step: string) => {
        const holding = actors.filter((a) => a.state === "holding")
        for (const t of drivers) {
          for (const c of t.opened) assert.isAtMost(c.closes, 1, `${step}: a connection closed twice`)
        }
        assert.strictEqual(new Set(holding.map((a) => a.conn)).size, holding.length, `${step}: a shared connection`)
        for (const a of holding) assert.strictEqual(a.conn!.closes, 0, `${step}: a held connection was closed`)
        assert.strictEqual(stats.aggregate.inUse, holding.length, `${step}: inUse vs holders`)
        stats.perServer.forEach((s, i) => {
          assert.strictEqual(drivers[i]!.open().length, s.stats.total, `${step}: server ${i} open vs total`)
          assert.isAtMost(s.stats.total, scenario.maxSize, `${step}: server ${i} above maxSize`)
        })
      }

      for (const [i, cmd] of scenario.commands.entries()) {
        switch (cmd._tag) {
          case "Get":
            yield* spawn("get")
            break
          case "TryGet":
            yield* spawn("tryGet")
            break
          case "Release": {
            const a = pick("holding", cmd.k)
            if (a) yield* Deferred.succeed(a.release, undefined)
            break
          }
          case "Interrupt": {
            const a = pick(cmd.k % 2 === 0 ? "waiting" : "holding", cmd.k)
            if (a) yield* Fiber.interrupt(a.fiber!)
            break
          }
          case "Invalidate": {
            const a = pick("holding", cmd.k)
            if (a) yield* pool.invalidate(a.conn!)
            break
          }
          case "Advance":
            yield* TestClock.adjust(cmd.millis)
            break
          case "Outage":
            drivers[cmd.server]!.setDown(cmd.down)
            break
          case "Mark":
            yield* cmd.healthy ? pool.markHealthy(cmd.server) : pool.markUnhealthy(cmd.server)
            break
        }
        yield* settle
        check(yield* pool.stats, `step ${i} ${cmd._tag}`)
      }

      // the end: everyone lets go, waiters time out, the pools shut down, every connection was closed exactly once
      for (const t of drivers) t.setDown(false)
      for (const a of actors) yield* Deferred.succeed(a.release, undefined)
      yield* TestClock.adjust("5 seconds")
      yield* settle
      const done = yield* Effect.fork(pool.shutdown("1 second"))
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(done)
      yield* settle
      for (const [i, a] of actors.entries()) assert.strictEqual(a.state, "done", `actor ${i} never finished`)
      const s = yield* pool.stats
      assert.deepStrictEqual([s.aggregate.total, s.aggregate.pending, s.aggregate.waiting], [0, 0, 0])
      for (const t of drivers) {
        for (const c of t.opened) assert.strictEqual(c.closes, 1, `connection ${c.id} closed ${c.closes} times`)
      }
    })), { timeout: 900_000, fastCheck: { numRuns: Number(process.env.PROP_RUNS ?? 100) } })
})
