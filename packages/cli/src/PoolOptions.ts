/**
 * Every option of `@connection-pool/core`'s `PoolConfig` as an @effect/cli flag, for the `connection-pool`
 * command and for any application that wants our pool's flags in a command of its own:
 *
 * ```ts
 * import { PoolOptions } from "@connection-pool/cli"
 * import { Command } from "@effect/cli"
 * import { Console } from "effect"
 *
 * const serve = Command.make("serve", { pool: PoolOptions.options }, ({ pool }) =>
 *   Console.log(`max ${pool.maxSize ?? "default"}`))
 * ```
 *
 * A flag not given leaves its field out, so the library's default applies (it is named in `--help`). The parsed
 * config is checked by building a pool with it (the library's own `InvalidConfig` checks, not a copy of them):
 * `--max-size 0` or `--min-size 5 --max-size 2` fail as usage errors.
 *
 * @since 0.1.0
 */
import * as ConnectionPool from "@connection-pool/core/ConnectionPool"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

const units: Record<string, Duration.Unit> = {
  ns: "nanos",
  us: "micros",
  ms: "millis",
  s: "seconds",
  m: "minutes",
  h: "hours",
  d: "days"
}

/**
 * A duration as typed on a command line: `250ms`, `5s`, `1.5m`, `2h`, effect's `"5 seconds"`, or `off` /
 * `infinity` (timers that allow it are turned off). `None` when it is none of these.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseDuration = (input: string): Option.Option<Duration.Duration> => {
  const text = input.trim().toLowerCase()
  if (text === "off" || text === "infinity" || text === "none") return Option.some(Duration.infinity)
  const short = /^(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)$/.exec(text)
  if (short !== null) return Option.some(Duration.decode(`${Number(short[1])} ${units[short[2]]}`))
  return /^\d+(\.\d+)?\s+[a-z]+$/.test(text) ? Duration.decodeUnknown(text) : Option.none()
}

const duration = (name: string, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("DURATION"),
    Options.mapEffect((text) =>
      Option.match(parseDuration(text), {
        onNone: () =>
          Effect.fail(ValidationError.invalidValue(HelpDoc.p(
            `--${name}: "${text}" is not a duration (try 500ms, 5s, 2m, 1h or off)`
          ))),
        onSome: Effect.succeed
      })
    ),
    Options.withDescription(description),
    Options.optional
  )

const integer = (name: string, description: string) =>
  Options.integer(name).pipe(Options.withDescription(description), Options.optional)

const fraction = (name: string, description: string) =>
  Options.float(name).pipe(Options.withDescription(description), Options.optional)

/** A switch: present is `true`, absent leaves the field out (its default is false). */
const flag = (name: string, description: string) =>
  Options.boolean(name).pipe(
    Options.withDescription(description),
    Options.map((on) => on ? Option.some(true) : Option.none())
  )

const defined = <A extends Record<string, Option.Option<unknown>>>(fields: A) => {
  const config: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(fields)) if (Option.isSome(value)) config[key] = value.value
  return config as { [K in keyof A]?: A[K] extends Option.Option<infer X> ? X : never }
}

/**
 * Checks `config` the way `ConnectionPool.make` does, by building (and at once closing) a pool of nothing with
 * it. Fails with the library's `InvalidConfig`.
 *
 * @since 0.1.0
 * @category validation
 */
export const validate = (config: ConnectionPool.PoolConfig) =>
  Effect.scoped(
    ConnectionPool.make({ ...config, driver: { connect: Effect.void, close: () => Effect.void } })
  ).pipe(Effect.as(config))

/**
 * The flags, unchecked: each `PoolConfig` field as `--kebab-case`, absent when not given.
 *
 * @since 0.1.0
 * @category options
 */
export const fields = Options.all({
  name: Options.text("pool-name").pipe(
    Options.withDescription("Names the pool in errors, logs and metrics. Default: the target's kind."),
    Options.optional
  ),
  minSize: integer("min-size", "Connections kept open even when idle. Default 0."),
  maxSize: integer(
    "max-size",
    "Most connections open at once. Default 10 (SQLite readers: 1, or one per core on workers)."
  ),
  acquireTimeout: duration("acquire-timeout", "Longest a caller waits for a connection (PoolTimeout). Default 30s."),
  connectTimeout: duration("connect-timeout", "Longest one connect may take. Default: --acquire-timeout."),
  idleTimeout: duration(
    "idle-timeout",
    "An idle connection is closed after this long, down to --min-size. Default 10m."
  ),
  maxLifetime: duration("max-lifetime", "A connection is closed once this old, never while in use. Default 30m."),
  maxLifetimeJitter: fraction(
    "max-lifetime-jitter",
    "Random fraction taken off each lifetime, in [0, 1). Default 0.025."
  ),
  validationBypass: duration(
    "validation-bypass",
    "Connections idle for less than this are lent unchecked. Default 500ms."
  ),
  validationTimeout: duration("validation-timeout", "Longest a validation may take. Default 5s."),
  keepaliveInterval: duration("keepalive-interval", "Idle connections are validated this often. Default off."),
  connectRetries: integer(
    "connect-retries",
    "Extra connects tried for a caller before its ConnectionError. Default 0."
  ),
  connectBackoff: duration("connect-backoff", "First delay between failed connects, doubling. Default 100ms."),
  connectBackoffMax: duration("connect-backoff-max", "Cap of that delay. Default 10s."),
  shutdownTimeout: duration("shutdown-timeout", "How long connections in use have at shutdown. Default 30s."),
  reuse: Options.choice("reuse", ["lifo", "fifo"]).pipe(
    Options.withDescription(
      "Which idle connection is lent first: lifo, the most recently returned (default), or fifo, the longest idle."
    ),
    Options.optional
  ),
  breakerThreshold: integer(
    "breaker-threshold",
    "Connect failures in a row that open the circuit breaker (callers then fail at once). Default 5; 0 is off."
  ),
  breakerBackoff: duration("breaker-backoff", "Delay before the breaker's first probe, doubling. Default 500ms."),
  breakerBackoffMax: duration("breaker-backoff-max", "Cap of the breaker's probe delay. Default 5s."),
  maxWaiting: integer(
    "max-waiting",
    "Most callers queued for a connection; past it a caller fails at once with PoolOverloaded. Default unlimited."
  ),
  shedOnExpectedWait: flag(
    "shed-on-expected-wait",
    "Also fail a caller at once when the queue's expected wait exceeds its --acquire-timeout. Default off."
  ),
  leakDetectionThreshold: duration(
    "leak-detection-threshold",
    "A connection held longer than this logs a leak warning (it is not closed). Default off."
  ),
  nested: Options.choice("nested", ["reuse", "fail", "allow"]).pipe(
    Options.withDescription(
      "A fiber that holds a connection and asks again: reuse it (default), fail with NestedAcquire, or allow a " +
        "second one."
    ),
    Options.optional
  )
})

/**
 * Every pool option as a flag, checked by the library: an `Options<PoolConfig>` to put into any command.
 *
 * @since 0.1.0
 * @category options
 */
export const options: Options.Options<ConnectionPool.PoolConfig> = fields.pipe(
  Options.map(defined),
  Options.mapEffect((config) =>
    Effect.mapError(
      validate(config),
      (e) => ValidationError.invalidValue(HelpDoc.p(`--${flagOf(e.option)}: ${e.message}`))
    )
  )
)

/**
 * The flag that sets a `PoolConfig` field: `maxSize` → `max-size` (`name` is `pool-name`).
 *
 * @since 0.1.0
 * @category options
 */
export const flagOf = (field: string): string =>
  field === "name" ? "pool-name" : field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
