import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as STM from "effect/STM"
import * as TRef from "effect/TRef"

const recheck = 25

/**
 * The global cap across endpoints: a counter of open (and opening) connections in a `TRef`. Only connects take
 * and closes give back, so it is off the borrowing hot path; waiters block on `STM.retry` (all wake when a
 * permit frees, which is fine at connect rates). `waiting` is plain state read by releases, which close an idle
 * connection rather than keep it while another endpoint waits for room.
 * @internal
 */
export class Limiter {
  waiting = 0
  private constructor(readonly max: number, readonly used: TRef.TRef<number>) {}

  static make(max: number): Effect.Effect<Limiter> {
    return Effect.map(TRef.make(0), (used) => new Limiter(max, used))
  }

  get unbounded(): boolean {
    return this.max === Infinity
  }

  /** Takes a permit if one is free. */
  get tryTake(): Effect.Effect<boolean> {
    if (this.unbounded) return Effect.succeed(true)
    return STM.commit(TRef.modify(this.used, (n) => n < this.max ? [true, n + 1] : [false, n]))
  }

  /**
   * A permit, once one is free. `evict` is asked to make room (closing an idle connection elsewhere) at first and
   * again every `recheck` ms while waiting: a connection can turn idle without passing a release that would see
   * this waiter (a connect finished for a caller that left). Interruption while waiting takes nothing.
   */
  take(evict: Effect.Effect<void>): Effect.Effect<void> {
    if (this.unbounded) return Effect.void
    const wait = STM.commit(
      STM.flatMap(TRef.get(this.used), (n) => n < this.max ? TRef.set(this.used, n + 1) : STM.retry)
    )
    return Effect.flatMap(this.tryTake, (taken) => {
      if (taken) return Effect.void
      return Effect.acquireUseRelease(
        Effect.sync(() => this.waiting++),
        () => {
          const attempt: Effect.Effect<void> = Effect.flatMap(
            Effect.zipRight(evict, Effect.timeoutOption(wait, recheck)),
            Option.match({ onNone: () => attempt, onSome: () => Effect.void })
          )
          return attempt
        },
        () => Effect.sync(() => this.waiting--)
      )
    })
  }

  get give(): Effect.Effect<void> {
    if (this.unbounded) return Effect.void
    return STM.commit(TRef.update(this.used, (n) => n - 1))
  }

  get current(): Effect.Effect<number> {
    return STM.commit(TRef.get(this.used))
  }
}
