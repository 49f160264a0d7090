import type { SqlError } from "@effect/sql/SqlError"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import type * as Scope from "effect/Scope"
import { nextSequence } from "./session.js"

/**
 * One position lookup shared by every reader it can serve. Sequence numbers order lookups after writes (both are
 * taken on the one JavaScript thread): a lookup started after a write completed sees a position at or past it.
 * A reader whose write came before the latest lookup (in flight or done) joins it instead of asking the server
 * again, so concurrent readers cost one round trip per batch, not one each.
 * @internal
 */
export class SharedLookup<A> {
  /** The last lookup sent, with its place in the order of events. */
  private latest: { readonly sequence: number; readonly result: Deferred.Deferred<A, SqlError> } | undefined
  /** A lookup about to be sent: every reader that comes before it is sent can join it. */
  private pending: Deferred.Deferred<A, SqlError> | undefined

  constructor(
    private readonly scope: Scope.Scope,
    private readonly query: Effect.Effect<A, SqlError>,
    private readonly onRoundTrip: () => void
  ) {}

  /** A result of a lookup sent after event `sequence`. */
  after(sequence: number): Effect.Effect<A, SqlError> {
    return Effect.suspend(() => {
      const latest = this.latest
      if (latest !== undefined && latest.sequence > sequence) return Deferred.await(latest.result)
      if (this.pending !== undefined) return Deferred.await(this.pending)
      const result = Deferred.unsafeMake<A, SqlError>(FiberId.none)
      this.pending = result
      // sent after a yield, so that the readers of this scheduler round share it; in the router's scope, so that a
      // reader interrupted while waiting does not cancel it for the others
      const send = Effect.suspend(() => {
        this.pending = undefined
        this.latest = { sequence: nextSequence(), result }
        this.onRoundTrip()
        return Effect.flatMap(Effect.exit(this.query), (exit) => Deferred.done(result, exit))
      })
      return Effect.zipRight(
        Effect.forkIn(Effect.zipRight(Effect.yieldNow(), send), this.scope),
        Deferred.await(result)
      )
    })
  }
}
