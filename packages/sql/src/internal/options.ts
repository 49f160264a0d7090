import { InvalidConfig } from "@connection-pool/core/PoolError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as SqlRouter from "../SqlRouter.js"
import type * as lag from "./lag.js"

/** @internal */
export interface Resolved {
  readonly name: string
  readonly selection: SqlRouter.Selection
  readonly policy: lag.LagPolicy
  readonly readYourWrites: boolean | "window"
  readonly window: number
  readonly fallback: "primary" | "fail"
}

const invalid = (option: string, value: unknown, reason: string) => new InvalidConfig({ option, value, reason })

const millis = (option: string, input: Duration.DurationInput | undefined, fallback: Duration.DurationInput) => {
  const decoded = Duration.decodeUnknown(input ?? fallback)
  const ms = decoded._tag === "Some" ? Duration.toMillis(decoded.value) : NaN
  return Number.isFinite(ms) && ms > 0
    ? Effect.succeed(ms)
    : Effect.fail(invalid(option, input, "must be a positive, finite duration"))
}

type Checked = SqlRouter.RouterConfig & {
  readonly primary: { readonly name: string }
  readonly replicas: ReadonlyArray<{ readonly name: string }>
}

/** @internal */
export const validate = (
  config: SqlRouter.RouterConfig,
  servers: { readonly primary: string; readonly replicas: ReadonlyArray<string> }
): Effect.Effect<void, InvalidConfig> =>
  Effect.asVoid(resolve({
    ...config,
    primary: { name: servers.primary },
    replicas: (servers.replicas ?? []).map((name) => ({ name }))
  }))

export const resolve = (options: Checked): Effect.Effect<Resolved, InvalidConfig> =>
  Effect.gen(function*() {
    const name = options.name ?? "router"
    if (typeof name !== "string" || name.length === 0) return yield* invalid("name", name, "must be a non-empty string")
    const names = [options.primary?.name, ...(options.replicas ?? []).map((r) => r?.name)]
    for (const [i, n] of names.entries()) {
      const option = i === 0 ? "primary.name" : `replicas[${i - 1}].name`
      if (typeof n !== "string" || n.length === 0) return yield* invalid(option, n, "must be a non-empty string")
      if (names.indexOf(n) !== i) return yield* invalid(option, n, "duplicate server name")
    }
    const selection = options.selection ?? "round-robin"
    if (typeof selection !== "function" && !["round-robin", "random", "least-connections"].includes(selection)) {
      return yield* invalid("selection", selection, "must be round-robin, random, least-connections or a function")
    }
    const maxLag = yield* millis("maxLag", options.maxLag, "1 second")
    const rejoinLag = yield* millis("rejoinLag", options.rejoinLag, Duration.millis(maxLag / 2))
    if (rejoinLag > maxLag) return yield* invalid("rejoinLag", options.rejoinLag, "must not exceed maxLag")
    const ryw = options.readYourWrites ?? true
    if (ryw !== true && ryw !== false && ryw !== "window") {
      return yield* invalid("readYourWrites", ryw, `must be true, false or "window"`)
    }
    const fallback = options.fallback ?? "primary"
    if (fallback !== "primary" && fallback !== "fail") {
      return yield* invalid("fallback", fallback, `must be "primary" or "fail"`)
    }
    return {
      name,
      selection,
      policy: {
        maxLag,
        rejoinLag,
        interval: yield* millis("lagInterval", options.lagInterval, "250 millis"),
        timeout: yield* millis("lagTimeout", options.lagTimeout, "2 seconds")
      },
      readYourWrites: ryw,
      window: yield* millis("readYourWritesWindow", options.readYourWritesWindow, "2 seconds"),
      fallback
    }
  })

