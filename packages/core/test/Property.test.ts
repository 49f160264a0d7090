import { assert, describe, it } from "@effect/vitest"
import { Deferred, type Duration, Effect, FastCheck as fc, Fiber, TestClock } from "effect"
import { ConnectionPool } from "../src/index.js"
import type { PoolStats } from "../src/PoolStats.js"
import { type Conn, makeDriver, settle } from "./utils.js"

// Random schedules of get / tryGet / release / interrupt / invalidate / timeout / resize / reconfigure / shutdown /
// server outages, with overload shedding on or off, and the invariants checked after every step against what the
// driver saw, not only the pool's word.

type Command =
  | { readonly _tag: "Get" }
  | { readonly _tag: "TryGet" }
  | { readonly _tag: "Release"; readonly k: number }
  | { readonly _tag: "Interrupt"; readonly k: number }
  | { readonly _tag: "Invalidate"; readonly k: number }
  | { readonly _tag: "Break"; readonly k: number }
  | { readonly _tag: "Advance"; readonly millis: number }
  | { readonly _tag: "Resize"; readonly minSize: number; readonly maxSize: number }
  | {
    readonly _tag: "Reconfigure"
    readonly minSize: number
    readonly maxSize: number
    readonly acquireTimeout: number
    readonly idleTimeout: number
    readonly maxLifetime: number
    readonly maxWaiting: number
  }
  | { readonly _tag: "Outage"; readonly down: boolean }
  | { readonly _tag: "Shutdown" }

const command: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: fc.constant({ _tag: "Get" } as const), weight: 6 },
  { arbitrary: fc.constant({ _tag: "TryGet" } as const), weight: 1 },
  { arbitrary: fc.nat(20).map((k) => ({ _tag: "Release", k }) as const), weight: 5 },
  { arbitrary: fc.nat(20).map((k) => ({ _tag: "Interrupt", k }) as const), weight: 2 },
  { arbitrary: fc.nat(20).map((k) => ({ _tag: "Invalidate", k }) as const), weight: 1 },
  { arbitrary: fc.nat(20).map((k) => ({ _tag: "Break", k }) as const), weight: 1 },
  { arbitrary: fc.integer({ min: 1, max: 3_000 }).map((millis) => ({ _tag: "Advance", millis }) as const), weight: 3 },
  {
    arbitrary: fc.record({ minSize: fc.nat(2), maxSize: fc.integer({ min: 2, max: 5 }) }).map((s) =>
      ({ _tag: "Resize", ...s }) as const
    ),
    weight: 1
  },
  {
    arbitrary: fc.record({
      minSize: fc.nat(2),
      maxSize: fc.integer({ min: 1, max: 5 }),
      acquireTimeout: fc.constantFrom(500, 2_000, 5_000),
      idleTimeout: fc.constantFrom(1_000, 5_000),
      maxLifetime: fc.constantFrom(3_000, 20_000),
      maxWaiting: fc.constantFrom(Infinity, 0, 1, 3)
    }).map((r) => ({ _tag: "Reconfigure", ...r }) as const),
    weight: 1
  },
  { arbitrary: fc.boolean().map((down) => ({ _tag: "Outage", down }) as const), weight: 1 },
  { arbitrary: fc.constant({ _tag: "Shutdown" } as const), weight: 1 }
)

interface Actor {
  readonly index: number
  readonly kind: "get" | "tryGet"
  state: "waiting" | "holding" | "done"
  conn: Conn | undefined
  served: boolean
  readonly release: Deferred.Deferred<void>
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
}

const scenario = fc.record({
  commands: fc.array(command, { minLength: 1, maxLength: 40 }),
  connectDelay: fc.constantFrom(0, 100),
  maxSize: fc.integer({ min: 1, max: 4 }),
  reuse: fc.constantFrom("lifo" as const, "fifo" as const),
  validationBypass: fc.constantFrom<Duration.DurationInput>("500 millis", 0),
  breakerThreshold: fc.constantFrom(0, 1, 3),
  maxWaiting: fc.constantFrom(Infinity, Infinity, 0, 2),
  shedOnExpectedWait: fc.boolean()
})

type Scenario = typeof scenario extends fc.Arbitrary<infer S> ? S : never

describe("ConnectionPool properties", () => {
  // PROP_SCENARIO='{"commands":…}' replays one scenario (as fast-check printed it) instead of random ones
  const replay = process.env.PROP_SCENARIO
  const scenarios = replay === undefined ? scenario : fc.constant(JSON.parse(replay) as Scenario)
  it.effect.prop("invariants hold under random schedules", { scenario: scenarios }, ({ scenario }) =>
    Effect.scoped(Effect.gen(function*() {
      const t = makeDriver(scenario.connectDelay > 0 ? { connectDelay: `${scenario.connectDelay} millis` } : {})
      const pool = yield* ConnectionPool.make({
        driver: t.driver,
        maxSize: scenario.maxSize,
        acquireTimeout: "2 seconds",
        connectTimeout: "1 second",
        validationBypass: scenario.validationBypass,
        reuse: scenario.reuse,
        breakerThreshold: scenario.breakerThreshold,
        breakerBackoff: "200 millis",
        breakerBackoffMax: "1 second",
        idleTimeout: "5 seconds",
        maxLifetime: "20 seconds",
        connectBackoff: "100 millis",
        connectBackoffMax: "1 second",
        shutdownTimeout: 0, // a failed check closes the scope at once instead of waiting on the test clock
        maxWaiting: scenario.maxWaiting,
        shedOnExpectedWait: scenario.shedOnExpectedWait
      })
      const actors: Array<Actor> = []
      let maxEver = scenario.maxSize
      let maxWaitingEver = scenario.maxWaiting
      let shut = false

      const spawn = (kind: "get" | "tryGet") =>
        Effect.gen(function*() {
          const actor: Actor = {
            index: actors.length,
            kind,
            state: "waiting",
            conn: undefined,
            served: false,
            release: yield* Deferred.make<void>(),
            fiber: undefined
          }
          actors.push(actor)
          actor.fiber = yield* Effect.fork(
            Effect.scoped(Effect.gen(function*() {
              const conn = yield* (kind === "get" ? pool.get : pool.tryGet)
              assert.strictEqual(actor.state, "waiting")
              actor.state = "holding"
              actor.conn = conn
              actor.served = true
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

      const check = (s: PoolStats, step: string) => {
        const holding = actors.filter((a) => a.state === "holding")
        for (const c of t.opened) assert.isAtMost(c.closes, 1, `${step}: connection ${c.id} closed twice`)
        if (!shut) {
          assert.strictEqual(s.inUse, holding.length, `${step}: inUse vs holders`)
          assert.strictEqual(t.open().length, s.total, `${step}: open connections vs total`)
          for (const a of holding) assert.strictEqual(a.conn!.closes, 0, `${step}: a held connection was closed`)
        }
        assert.strictEqual(new Set(holding.map((a) => a.conn)).size, holding.length, `${step}: shared connection`)
        assert.isAtMost(s.total, maxEver, `${step}: total above every maxSize`)
        if (s.idle > 0) assert.isAtMost(s.total, s.maxSize, `${step}: idle connections above maxSize`)
        assert.isAtLeast(s.waiting, 0)
        // past maxWaiting, only callers a connect was started for are queued: at most one per connection slot
        assert.isAtMost(s.waiting, maxWaitingEver + maxEver, `${step}: waiting past maxWaiting`)
        assert.isAtLeast(s.pending, 0)
        // FIFO: no `get` is served while an earlier `get` still waits
        const waiting = actors.filter((a) => a.kind === "get" && a.state === "waiting")
        for (const w of waiting) {
          const overtaken = actors.find((a) => a.kind === "get" && a.index > w.index && a.served)
          assert.isUndefined(overtaken, `${step}: get #${overtaken?.index} served before #${w.index}`)
        }
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
          case "Break": {
            const a = pick("holding", cmd.k)
            if (a) a.conn!.broken = true
            break
          }
          case "Advance":
            yield* TestClock.adjust(cmd.millis)
            break
          case "Resize": {
            const minSize = Math.min(cmd.minSize, cmd.maxSize)
            yield* pool.resize({ minSize, maxSize: cmd.maxSize })
            maxEver = Math.max(maxEver, cmd.maxSize)
            break
          }
          case "Reconfigure": {
            const { _tag, ...changes } = cmd
            yield* pool.reconfigure({ ...changes, minSize: Math.min(cmd.minSize, cmd.maxSize) })
            maxEver = Math.max(maxEver, cmd.maxSize)
            maxWaitingEver = Math.max(maxWaitingEver, cmd.maxWaiting)
            break
          }
          case "Outage":
            t.setDown(cmd.down)
            break
          case "Shutdown":
            shut = true
            yield* Effect.fork(pool.shutdown("1 second"))
            break
        }
        yield* settle
        check(yield* pool.stats, `step ${i} ${cmd._tag}`)
      }

      // the end: everyone lets go, the pool shuts down, and every connection was closed exactly once
      t.setDown(false)
      for (const a of actors) yield* Deferred.succeed(a.release, undefined)
      yield* settle
      const done = yield* Effect.fork(pool.shutdown("1 second"))
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(done)
      yield* settle
      for (const a of actors) assert.strictEqual(a.state, "done", `actor ${a.index} never finished`)
      const s = yield* pool.stats
      assert.deepStrictEqual([s.total, s.pending, s.waiting, s.idle], [0, 0, 0, 0])
      for (const c of t.opened) assert.strictEqual(c.closes, 1, `connection ${c.id} closed ${c.closes} times`)
    })), { timeout: 900_000, fastCheck: { numRuns: replay === undefined ? Number(process.env.PROP_RUNS ?? 200) : 1 } })
})
