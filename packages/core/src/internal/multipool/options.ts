import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as ConnectionPool from "../../ConnectionPool.js"
import type * as MultiPool from "../../MultiPool.js"
import { InvalidConfig } from "../../PoolError.js"
import type { BanPolicy } from "./health.js"

/** @internal */
export interface Resolved {
  readonly name: string
  /** The pool options every server shares, before its own. */
  readonly shared: Omit<ConnectionPool.PoolConfig, "name" | "minSize" | "maxSize">
  readonly minSizePerServer: number | undefined
  readonly maxSizePerServer: number | undefined
  readonly selection: MultiPool.Selection
  readonly ban: BanPolicy
  readonly whenAllBanned: "unban" | "fail"
  /** The caller's whole deadline across failovers, in millis. */
  readonly acquireTimeout: number
  readonly probeTimeout: (server: MultiPool.ServerOptions<any, any>) => number
}

const invalid = (option: string, value: unknown, reason: string) => new InvalidConfig({ option, value, reason })

const millis = (input: Duration.DurationInput | undefined, fallback: Duration.DurationInput): number | undefined => {
  const decoded = Duration.decodeUnknown(input ?? fallback)
  if (decoded._tag === "None") return undefined
  const ms = Duration.toMillis(decoded.value)
  return Number.isFinite(ms) && ms > 0 ? ms : undefined
}

const selections = new Set(["round-robin", "random", "least-in-use"])

/** Checks what the multi-pool itself takes; each server's pool checks the rest. @internal */
export const resolve = <A, R>(options: MultiPool.Options<A, R>): Effect.Effect<Resolved, InvalidConfig> =>
  Effect.gen(function*() {
    const {
      acquireTimeout,
      banAfter,
      banJitter,
      banTime,
      maxSizePerServer,
      minSizePerServer,
      name = "multi",
      selection = "round-robin",
      servers,
      whenAllBanned = "unban",
      ...shared
    } = options
    if (typeof name !== "string" || name.length === 0) return yield* invalid("name", name, "must be a non-empty string")
    if (!Array.isArray(servers) || servers.length === 0) {
      return yield* invalid("servers", servers, "must list at least one server")
    }
    const seen = new Set<string>()
    for (const [i, server] of servers.entries()) {
      if (typeof server?.name !== "string" || server.name.length === 0) {
        return yield* invalid(`servers[${i}].name`, server?.name, "must be a non-empty string")
      }
      if (seen.has(server.name)) return yield* invalid(`servers[${i}].name`, server.name, "duplicate server name")
      seen.add(server.name)
      if (typeof server.driver?.connect !== "object" || typeof server.driver?.close !== "function") {
        return yield* invalid(`servers[${i}].driver`, "(driver)", "must have connect and close")
      }
    }
    if (typeof selection !== "function" && !selections.has(selection)) {
      return yield* invalid("selection", selection, "must be round-robin, random, least-in-use or a function")
    }
    const after = banAfter ?? 3
    if (typeof after !== "number" || !Number.isInteger(after) || after < 0) {
      return yield* invalid("banAfter", banAfter, "must be an integer, at least 0 (0: no automatic bans)")
    }
    const timeMs = millis(banTime, "10 seconds")
    if (timeMs === undefined) return yield* invalid("banTime", banTime, "must be a positive, finite duration")
    const jitter = banJitter ?? 0.2
    if (typeof jitter !== "number" || !(jitter >= 0 && jitter < 1)) {
      return yield* invalid("banJitter", banJitter, "must be a fraction in [0, 1)")
    }
    if (whenAllBanned !== "unban" && whenAllBanned !== "fail") {
      return yield* invalid("whenAllBanned", whenAllBanned, `must be "unban" or "fail"`)
    }
    const deadline = millis(acquireTimeout, "30 seconds")
    if (deadline === undefined) {
      return yield* invalid("acquireTimeout", acquireTimeout, "must be a positive, finite duration")
    }
    return {
      name,
      shared: { ...shared, acquireTimeout: Duration.millis(deadline) },
      minSizePerServer,
      maxSizePerServer,
      selection,
      ban: { after, timeMs, jitter },
      whenAllBanned,
      acquireTimeout: deadline,
      probeTimeout: (server) =>
        millis(server.connectTimeout ?? shared.connectTimeout, server.acquireTimeout ?? Duration.millis(deadline)) ??
          deadline
    }
  })
