import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { PoolConfig } from "../ConnectionPool.js"
import { InvalidConfig } from "../PoolError.js"

/** Options with defaults applied, times in milliseconds (`Infinity` where a timer is off). @internal */
export interface Resolved {
  readonly name: string
  readonly minSize: number
  readonly maxSize: number
  readonly acquireTimeout: number
  readonly connectTimeout: number
  readonly idleTimeout: number
  readonly maxLifetime: number
  readonly maxLifetimeJitter: number
  readonly validationBypass: number
  readonly validationTimeout: number
  readonly keepaliveInterval: number
  readonly connectRetries: number
  readonly connectBackoff: number
  readonly connectBackoffMax: number
  readonly shutdownTimeout: number
  readonly reuse: "lifo" | "fifo"
  /** Consecutive connect failures that open the circuit breaker; `Infinity` when it is off. */
  readonly breakerThreshold: number
  readonly breakerBackoff: number
  readonly breakerBackoffMax: number
  /** Most callers queued for a release; `Infinity` when unlimited. */
  readonly maxWaiting: number
  readonly shedOnExpectedWait: boolean
  /** `Infinity` when leak detection is off. */
  readonly leakDetectionThreshold: number
  readonly nested: "reuse" | "fail" | "allow"
}

const invalid = (option: string, value: unknown, reason: string) => new InvalidConfig({ option, value, reason })

/**
 * What `Duration.decode` would silently turn into zero: a negative or NaN number, bigint, tuple or string (effect
 * clamps them all). Checked on the input as the user wrote it, so the error can show it.
 */
const negativeOrNaN = (input: unknown): "negative" | "NaN" | undefined => {
  const check = (n: number | bigint) =>
    typeof n === "number" && Number.isNaN(n) ? "NaN" as const : n < 0 ? "negative" as const : undefined
  if (typeof input === "number" || typeof input === "bigint") return check(input)
  if (Array.isArray(input)) return input.map((n) => typeof n === "number" ? check(n) : undefined).find(Boolean)
  if (typeof input === "string") {
    const trimmed = input.trim()
    return trimmed.startsWith("-") ? "negative" : /^nan\b/i.test(trimmed) ? "NaN" : undefined
  }
  return undefined
}

/** @internal */
export const duration = (
  option: string,
  input: Duration.DurationInput | undefined,
  fallback: Duration.DurationInput,
  allow: { readonly infinite?: boolean; readonly zero?: boolean } = {}
): Effect.Effect<number, InvalidConfig> => {
  const bad = negativeOrNaN(input)
  if (bad !== undefined) {
    return Effect.fail(invalid(option, input, bad === "NaN" ? "not a number" : "must not be negative"))
  }
  const decoded = Duration.decodeUnknown(input ?? fallback)
  if (decoded._tag === "None") return Effect.fail(invalid(option, input, "not a duration"))
  const millis = Duration.toMillis(decoded.value)
  if (Number.isNaN(millis)) return Effect.fail(invalid(option, input, "not a number"))
  if (millis === Infinity && !allow.infinite) return Effect.fail(invalid(option, input, "must be finite"))
  if (millis < 0 || (millis === 0 && !allow.zero)) {
    return Effect.fail(invalid(option, input, allow.zero ? "must not be negative" : "must be positive"))
  }
  return Effect.succeed(millis)
}

const integer = (option: string, input: number | undefined, fallback: number, min: number) =>
  Effect.suspend(() => {
    const value = input ?? fallback
    if (typeof value !== "number" || !Number.isInteger(value)) {
      return Effect.fail(invalid(option, input, "must be an integer"))
    }
    if (value < min) return Effect.fail(invalid(option, input, `must be at least ${min}`))
    return Effect.succeed(value)
  })

/** @internal */
export const validateSizes = (minSize: number | undefined, maxSize: number | undefined, current?: Resolved) =>
  Effect.flatMap(
    Effect.all([
      integer("minSize", minSize, current?.minSize ?? 0, 0),
      integer("maxSize", maxSize, current?.maxSize ?? 10, 1)
    ]),
    ([min, max]) =>
      min > max
        ? Effect.fail(invalid("minSize", min, `must not exceed maxSize (${max})`))
        : Effect.succeed({ minSize: min, maxSize: max })
  )

/** @internal */
export const resolve = (options: PoolConfig): Effect.Effect<Resolved, InvalidConfig> =>
  Effect.gen(function*() {
    const name = options.name ?? "default"
    if (typeof name !== "string" || name.length === 0) {
      return yield* invalid("name", options.name, "must be a non-empty string")
    }
    const sizes = yield* validateSizes(options.minSize, options.maxSize)
    const acquireTimeout = yield* duration("acquireTimeout", options.acquireTimeout, "30 seconds")
    const jitter = options.maxLifetimeJitter ?? 0.025
    if (typeof jitter !== "number" || !(jitter >= 0 && jitter < 1)) {
      return yield* invalid("maxLifetimeJitter", jitter, "must be a fraction in [0, 1)")
    }
    const backoff = yield* duration("connectBackoff", options.connectBackoff, "100 millis")
    const backoffMax = yield* duration("connectBackoffMax", options.connectBackoffMax, "10 seconds")
    if (backoffMax < backoff) {
      return yield* invalid("connectBackoffMax", options.connectBackoffMax, "must not be below connectBackoff")
    }
    return {
      name,
      ...sizes,
      acquireTimeout,
      connectTimeout: yield* duration("connectTimeout", options.connectTimeout, acquireTimeout),
      idleTimeout: yield* duration("idleTimeout", options.idleTimeout, "10 minutes", { infinite: true }),
      maxLifetime: yield* duration("maxLifetime", options.maxLifetime, "30 minutes", { infinite: true }),
      maxLifetimeJitter: jitter,
      validationBypass: yield* duration("validationBypass", options.validationBypass, "500 millis", { zero: true }),
      validationTimeout: yield* duration("validationTimeout", options.validationTimeout, "5 seconds"),
      keepaliveInterval: yield* duration("keepaliveInterval", options.keepaliveInterval, Duration.infinity, {
        infinite: true
      }),
      connectRetries: yield* integer("connectRetries", options.connectRetries, 0, 0),
      connectBackoff: backoff,
      connectBackoffMax: backoffMax,
      shutdownTimeout: yield* duration("shutdownTimeout", options.shutdownTimeout, "30 seconds", { zero: true }),
      reuse: yield* reuse(options.reuse),
      ...(yield* breaker(options)),
      maxWaiting: yield* maxWaiting(options.maxWaiting),
      shedOnExpectedWait: yield* flag("shedOnExpectedWait", options.shedOnExpectedWait),
      leakDetectionThreshold: yield* duration(
        "leakDetectionThreshold",
        options.leakDetectionThreshold,
        Duration.infinity,
        { infinite: true }
      ),
      nested: yield* nested(options.nested)
    }
  })

const maxWaiting = (input: number | undefined): Effect.Effect<number, InvalidConfig> =>
  input === undefined || input === Infinity ? Effect.succeed(Infinity) : integer("maxWaiting", input, 0, 0)

const flag = (option: string, input: boolean | undefined): Effect.Effect<boolean, InvalidConfig> =>
  input === undefined || typeof input === "boolean"
    ? Effect.succeed(input ?? false)
    : Effect.fail(invalid(option, input, "must be true or false"))

const reuse = (input: PoolConfig["reuse"]): Effect.Effect<"lifo" | "fifo", InvalidConfig> =>
  input === undefined || input === "lifo" || input === "fifo"
    ? Effect.succeed(input ?? "lifo")
    : Effect.fail(invalid("reuse", input, `must be "lifo" or "fifo"`))

const nested = (input: PoolConfig["nested"]): Effect.Effect<"reuse" | "fail" | "allow", InvalidConfig> =>
  input === undefined || input === "reuse" || input === "fail" || input === "allow"
    ? Effect.succeed(input ?? "reuse")
    : Effect.fail(invalid("nested", input, `must be "reuse", "fail" or "allow"`))

const breaker = (options: PoolConfig) =>
  Effect.gen(function*() {
    const threshold = yield* integer("breakerThreshold", options.breakerThreshold, 5, 0)
    const backoff = yield* duration("breakerBackoff", options.breakerBackoff, "500 millis", { infinite: true })
    const max = yield* duration("breakerBackoffMax", options.breakerBackoffMax, "5 seconds", { infinite: true })
    if (max < backoff) {
      return yield* invalid("breakerBackoffMax", options.breakerBackoffMax, "must not be below breakerBackoff")
    }
    const off = threshold === 0 || backoff === Infinity
    return { breakerThreshold: off ? Infinity : threshold, breakerBackoff: backoff, breakerBackoffMax: max }
  })

/** Full jitter over an exponential step: uniform in [delay / 2, delay]. @internal */
export const backoffDelay = (options: Resolved, attempt: number, random: number): number => {
  const delay = Math.min(options.connectBackoffMax, options.connectBackoff * 2 ** Math.max(0, attempt - 1))
  return delay / 2 + (delay / 2) * random
}

/** The breaker's delay before its `attempt`th probe, jittered like `backoffDelay`. @internal */
export const probeDelay = (options: Resolved, attempt: number, random: number): number => {
  const delay = Math.min(options.breakerBackoffMax, options.breakerBackoff * 2 ** Math.max(0, attempt - 1))
  return delay / 2 + (delay / 2) * random
}
