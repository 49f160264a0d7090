/**
 * The checks `ConnectionPool.make` applies to its options, for packages built on the core (a TCP pool, a CLI) so
 * that every one rejects a bad value the same way: a typed `InvalidConfig` that shows the value as it was written,
 * never a silent clamp (effect's `Duration` would turn `-1` or `NaN` into zero).
 *
 * @since 0.2.0
 */
import * as Config from "effect/Config"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as internal from "./internal/options.js"
import type { InvalidConfig } from "./PoolError.js"

/**
 * A duration option in milliseconds: `fallback` when `input` is undefined; negative, NaN or unparsable input is
 * an `InvalidConfig`, and so are zero and `Duration.infinity` unless allowed.
 *
 * @since 0.2.0
 * @category checks
 */
export const duration: (
  option: string,
  input: Duration.DurationInput | undefined,
  fallback: Duration.DurationInput,
  allow?: { readonly infinite?: boolean; readonly zero?: boolean }
) => Effect.Effect<number, InvalidConfig> = internal.duration

/**
 * A duration option read from `Config` as the text the user wrote, for `layerConfig`: the pool then checks that
 * text, so `"-1 seconds"` is an `InvalidConfig` that quotes it. (`Config.duration` parses first, and effect's
 * parser turns a negative duration into zero.)
 *
 * @example
 * ```ts
 * Db.layerConfig(driver, { acquireTimeout: OptionCheck.durationConfig("DB_ACQUIRE_TIMEOUT") })
 * ```
 *
 * @since 0.2.0
 * @category config
 */
export const durationConfig = (name: string): Config.Config<Duration.DurationInput> =>
  Config.map(Config.string(name), (text) => text.trim() as Duration.DurationInput)
