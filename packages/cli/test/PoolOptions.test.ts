import { PoolOptions } from "@connection-pool/cli"
import type { ConnectionPool } from "@connection-pool/core"
import { CliConfig, Options } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"

const parse = (args: ReadonlyArray<string>) =>
  Options.processCommandLine(PoolOptions.options, args, CliConfig.defaultConfig).pipe(
    Effect.map(([, , config]) => config),
    Effect.provide(NodeContext.layer)
  )

const failure = (args: ReadonlyArray<string>) =>
  Effect.map(Effect.flip(parse(args)), (e) => JSON.stringify(e))

/** The fields of PoolConfig, read from the core's source, so that a new option without a flag fails here. */
const poolConfigFields = (): Array<string> => {
  const source = fs.readFileSync(path.resolve(__dirname, "../../core/src/ConnectionPool.ts"), "utf8")
  const body = /export interface PoolConfig \{([\s\S]*?)\n\}/.exec(source)![1]
  return [...body.matchAll(/^\s+readonly (\w+)\?:/gm)].map((m) => m[1])
}

describe("PoolOptions", () => {
  it.effect("no flags: an empty PoolConfig, so every library default applies", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* parse([]), {})
    }))

  it.effect("every PoolConfig field has a flag, and each parses to the field", () =>
    Effect.gen(function*() {
      const config = yield* parse([
        "--pool-name", "app",
        "--min-size", "2",
        "--max-size", "20",
        "--acquire-timeout", "5s",
        "--connect-timeout", "1500ms",
        "--idle-timeout", "2m",
        "--max-lifetime", "off",
        "--max-lifetime-jitter", "0.1",
        "--validation-bypass", "0ms",
        "--validation-timeout", "3 seconds",
        "--keepalive-interval", "30s",
        "--connect-retries", "3",
        "--connect-backoff", "50ms",
        "--connect-backoff-max", "1h",
        "--shutdown-timeout", "10s",
        "--reuse", "fifo",
        "--breaker-threshold", "3",
        "--breaker-backoff", "1s",
        "--breaker-backoff-max", "20s",
        "--max-waiting", "50",
        "--shed-on-expected-wait",
        "--leak-detection-threshold", "10s",
        "--nested", "fail"
      ])
      const expected: Required<ConnectionPool.PoolConfig> = {
        name: "app",
        minSize: 2,
        maxSize: 20,
        acquireTimeout: Duration.seconds(5),
        connectTimeout: Duration.millis(1500),
        idleTimeout: Duration.minutes(2),
        maxLifetime: Duration.infinity,
        maxLifetimeJitter: 0.1,
        validationBypass: Duration.millis(0),
        validationTimeout: Duration.seconds(3),
        keepaliveInterval: Duration.seconds(30),
        connectRetries: 3,
        connectBackoff: Duration.millis(50),
        connectBackoffMax: Duration.hours(1),
        shutdownTimeout: Duration.seconds(10),
        reuse: "fifo",
        breakerThreshold: 3,
        breakerBackoff: Duration.seconds(1),
        breakerBackoffMax: Duration.seconds(20),
        maxWaiting: 50,
        shedOnExpectedWait: true,
        leakDetectionThreshold: Duration.seconds(10),
        nested: "fail"
      }
      assert.deepStrictEqual(Object.keys(config).sort(), poolConfigFields().sort())
      for (const [key, value] of Object.entries(expected)) {
        const got = (config as Record<string, unknown>)[key]
        if (Duration.isDuration(value)) assert.isTrue(Duration.equals(got as Duration.Duration, value), key)
        else assert.strictEqual(got, value, key)
      }
    }))

  it.effect("values the pool rejects fail with the library's InvalidConfig reason, naming the flag", () =>
    Effect.gen(function*() {
      const cases: Array<[ReadonlyArray<string>, RegExp]> = [
        [["--max-size", "0"], /--max-size: invalid pool option maxSize = 0: must be at least 1/],
        [["--min-size", "5", "--max-size", "2"], /--min-size: .*must not exceed maxSize \(2\)/],
        [["--min-size", "-1"], /--min-size: .*must be at least 0/],
        [["--max-lifetime-jitter", "1.5"], /--max-lifetime-jitter: .*fraction in \[0, 1\)/],
        [["--acquire-timeout", "off"], /--acquire-timeout: .*must be finite/],
        [["--validation-timeout", "0s"], /--validation-timeout: .*must be positive/],
        [["--connect-backoff", "1s", "--connect-backoff-max", "10ms"], /--connect-backoff-max: .*below connectBackoff/],
        [["--pool-name", ""], /--pool-name: .*non-empty/],
        [["--max-waiting", "-1"], /--max-waiting: invalid pool option maxWaiting = -1: must be at least 0/]
      ]
      for (const [args, pattern] of cases) assert.match(yield* failure(args), pattern, args.join(" "))
    }))

  it.effect("values that are not of the flag's type fail before the pool sees them", () =>
    Effect.gen(function*() {
      assert.match(yield* failure(["--max-size", "ten"]), /InvalidValue.*ten/)
      assert.match(yield* failure(["--max-size", "2.5"]), /InvalidValue.*2\.5/)
      assert.match(yield* failure(["--idle-timeout", "soon"]), /--idle-timeout: \\"soon\\" is not a duration/)
      assert.match(yield* failure(["--idle-timeout", "10"]), /is not a duration/) // a unit is required
    }))

  it("parseDuration reads short units, effect's form, and off", () => {
    const ms = (s: string) =>
      PoolOptions.parseDuration(s).pipe((o) => (o._tag === "Some" ? Duration.toMillis(o.value) : NaN))
    assert.strictEqual(ms("250ms"), 250)
    assert.strictEqual(ms("1.5s"), 1500)
    assert.strictEqual(ms("2m"), 120_000)
    assert.strictEqual(ms("1h"), 3_600_000)
    assert.strictEqual(ms("5 seconds"), 5000)
    assert.strictEqual(ms("off"), Infinity)
    assert.isNaN(ms("5 parsecs"))
    assert.isNaN(ms("-5s"))
  })
})
