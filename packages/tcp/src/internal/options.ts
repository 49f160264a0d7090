import * as OptionCheck from "@connection-pool/core/OptionCheck"
import { InvalidConfig } from "@connection-pool/core/PoolError"
import * as Effect from "effect/Effect"
import type * as TcpPool from "../TcpPool.js"

/** Options with defaults applied, times in milliseconds (`Infinity` where a bound is off). @internal */
export interface Resolved {
  readonly name: string
  readonly maxConnectionsPerEndpoint: number
  readonly maxWaitingPerEndpoint: number
  readonly shedOnExpectedWait: boolean
  readonly maxIdlePerEndpoint: number
  readonly maxConnections: number
  readonly idleTimeout: number
  readonly maxLifetime: number
  readonly maxUses: number
  readonly connectTimeout: number
  readonly tlsHandshakeTimeout: number
  readonly acquireTimeout: number
  readonly connectRetries: number
  readonly connectBackoff: number
  readonly connectBackoffMax: number
  readonly validationBypass: number
  readonly endpointIdleTimeout: number
  readonly shutdownTimeout: number
  readonly noDelay: boolean
  readonly keepAlive: number
  readonly tls: TcpPool.TlsOptions | undefined
}

const invalid = (option: string, value: unknown, reason: string) => new InvalidConfig({ option, value, reason })

/** The core's own duration check: negative or NaN values are rejected as written, not clamped to zero. */
const duration = OptionCheck.duration

/** An integer of at least `min`; `Infinity` too when `infinite`. */
const count = (option: string, input: number | undefined, fallback: number, min: number, infinite = false) =>
  Effect.suspend(() => {
    const value = input ?? fallback
    if (typeof value !== "number" || !(Number.isInteger(value) || (infinite && value === Infinity))) {
      return Effect.fail(invalid(option, input, infinite ? "must be an integer or Infinity" : "must be an integer"))
    }
    if (value < min) return Effect.fail(invalid(option, input, `must be at least ${min}`))
    return Effect.succeed(value)
  })

const tlsOptions = (
  tls: TcpPool.TlsOptions | undefined
): Effect.Effect<TcpPool.TlsOptions | undefined, InvalidConfig> => {
  if (tls === undefined) return Effect.succeed(undefined)
  if (typeof tls !== "object" || tls === null) return Effect.fail(invalid("tls", tls, "must be an object"))
  if (tls.servername !== undefined && (typeof tls.servername !== "string" || tls.servername.length === 0)) {
    return Effect.fail(invalid("tls.servername", tls.servername, "must be a non-empty string"))
  }
  if (tls.ALPN !== undefined && (!Array.isArray(tls.ALPN) || !tls.ALPN.every((p) => typeof p === "string"))) {
    return Effect.fail(invalid("tls.ALPN", tls.ALPN, "must be an array of protocol names"))
  }
  if (tls.rejectUnauthorized !== undefined && typeof tls.rejectUnauthorized !== "boolean") {
    return Effect.fail(invalid("tls.rejectUnauthorized", tls.rejectUnauthorized, "must be a boolean"))
  }
  return Effect.succeed(tls)
}

/** @internal */
export const resolve = (options: TcpPool.PoolConfig): Effect.Effect<Resolved, InvalidConfig> =>
  Effect.gen(function*() {
    const name = options.name ?? "tcp"
    if (typeof name !== "string" || name.length === 0) {
      return yield* invalid("name", options.name, "must be a non-empty string")
    }
    const perEndpoint = yield* count("maxConnectionsPerEndpoint", options.maxConnectionsPerEndpoint, 10, 1)
    const maxIdle = yield* count("maxIdlePerEndpoint", options.maxIdlePerEndpoint, perEndpoint, 0, true)
    const maxConnections = yield* count("maxConnections", options.maxConnections, Infinity, 1, true)
    const backoff = yield* duration("connectBackoff", options.connectBackoff, "100 millis")
    const backoffMax = yield* duration("connectBackoffMax", options.connectBackoffMax, "5 seconds")
    if (backoffMax < backoff) {
      return yield* invalid("connectBackoffMax", options.connectBackoffMax, "must not be below connectBackoff")
    }
    if (options.noDelay !== undefined && typeof options.noDelay !== "boolean") {
      return yield* invalid("noDelay", options.noDelay, "must be a boolean")
    }
    if (options.shedOnExpectedWait !== undefined && typeof options.shedOnExpectedWait !== "boolean") {
      return yield* invalid("shedOnExpectedWait", options.shedOnExpectedWait, "must be a boolean")
    }
    return {
      name,
      maxConnectionsPerEndpoint: perEndpoint,
      maxWaitingPerEndpoint: yield* count("maxWaitingPerEndpoint", options.maxWaitingPerEndpoint, Infinity, 0, true),
      shedOnExpectedWait: options.shedOnExpectedWait ?? false,
      maxIdlePerEndpoint: Math.min(maxIdle, perEndpoint),
      maxConnections,
      idleTimeout: yield* duration("idleTimeout", options.idleTimeout, "30 seconds", { infinite: true }),
      maxLifetime: yield* duration("maxLifetime", options.maxLifetime, "30 minutes", { infinite: true }),
      maxUses: yield* count("maxUses", options.maxUses, Infinity, 1, true),
      connectTimeout: yield* duration("connectTimeout", options.connectTimeout, "10 seconds"),
      tlsHandshakeTimeout: yield* duration("tlsHandshakeTimeout", options.tlsHandshakeTimeout, "10 seconds"),
      acquireTimeout: yield* duration("acquireTimeout", options.acquireTimeout, "30 seconds"),
      connectRetries: yield* count("connectRetries", options.connectRetries, 2, 0),
      connectBackoff: backoff,
      connectBackoffMax: backoffMax,
      validationBypass: yield* duration("validationBypass", options.validationBypass, "500 millis", { zero: true }),
      endpointIdleTimeout: yield* duration("endpointIdleTimeout", options.endpointIdleTimeout, "5 minutes", {
        infinite: true
      }),
      shutdownTimeout: yield* duration("shutdownTimeout", options.shutdownTimeout, "30 seconds", { zero: true }),
      noDelay: options.noDelay ?? true,
      keepAlive: yield* duration("keepAlive", options.keepAlive, "60 seconds", { infinite: true, zero: true }),
      tls: yield* tlsOptions(options.tls)
    }
  })

/** Exponential from `connectBackoff`, capped, with full jitter over its upper half: uniform in [d / 2, d]. @internal */
export const backoffDelay = (options: Resolved, attempt: number, random: number): number => {
  const delay = Math.min(options.connectBackoffMax, options.connectBackoff * 2 ** Math.max(0, attempt - 1))
  return delay / 2 + (delay / 2) * random
}
