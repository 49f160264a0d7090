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
}

const invalid = (option: string, value: unknown, reason: string) => new InvalidConfig({ option, value, reason })

const duration = (
  option: string,
  input: Duration.DurationInput | undefined,
  fallback: Duration.DurationInput,
  allow: { readonly infinite?: boolean; readonly zero?: boolean } = {}
): Effect.Effect<number, InvalidConfig> => {
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
      shutdownTimeout: yield* duration("shutdownTimeout", options.shutdownTimeout, "30 seconds", { zero: true })
    }
  })

/** Full jitter over an exponential step: uniform in [delay / 2, delay]. @internal */
export const backoffDelay = (options: Resolved, attempt: number, random: number): number => {
  const delay = Math.min(options.connectBackoffMax, options.connectBackoff * 2 ** Math.max(0, attempt - 1))
  return delay / 2 + (delay / 2) * random
}
