import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import { identity } from "effect/Function"
import * as RuntimeFlags from "effect/RuntimeFlags"
import type { Restore } from "./handoff.js"

/**
 * `uninterruptibleMask((restore) => withFiberRuntime((fiber) => body(restore, fiber)))`, without building the mask
 * on every run. A mask is a fresh runtime-flags step and two closures per run, and around a borrow that waits it
 * cost as much allocation as the handoff itself. The two shapes it can take — for a caller that was
 * interruptible (`restore` makes it interruptible again) and for one that was not (`restore` leaves it
 * uninterruptible) — are built once, on first use, and chosen from the caller's runtime flags.
 *
 * @internal
 */
export const maskedStep = <X, E, R>(
  body: (restore: Restore, fiber: Fiber.RuntimeFiber<any, any>) => Effect.Effect<X, E, R>
): Effect.Effect<X, E, R> => {
  let fromInterruptible: Effect.Effect<X, E, R> | undefined = undefined
  let fromUninterruptible: Effect.Effect<X, E, R> | undefined = undefined
  const shape = (restore: Restore) =>
    Effect.uninterruptible(Effect.withFiberRuntime<X, E, R>((fiber) => body(restore, fiber)))
  return Effect.withFiberRuntime<X, E, R>((_, status) =>
    RuntimeFlags.interruption(status.runtimeFlags)
      ? fromInterruptible ??= shape(Effect.interruptible)
      : fromUninterruptible ??= shape(identity)
  )
}
