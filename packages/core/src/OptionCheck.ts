/**
 * The checks `ConnectionPool.make` applies to its options, for packages built on the core (a TCP pool, a CLI) so
 * that every one rejects a bad value the same way: a typed `InvalidConfig` that shows the value as it was written,
 * never a silent clamp (effect's `Duration` would turn `-1` or `NaN` into zero).
 *
 * @since 0.2.0
 */
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
