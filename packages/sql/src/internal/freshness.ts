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
  private latest: { readonly sequence: number; readonly result: Deferred.Deferred<A, SqlError> } | undefined

  constructor(
    private readonly scope: Scope.Scope,
    private readonly query: Effect.Effect<A, SqlError>,
    private readonly onRoundTrip: () => void
  ) {}

  /** A result of a lookup started after `sequence`. */
  after(sequence: number): Effect.Effect<A, SqlError> {
    const latest = this.latest
    if (latest !== undefined && latest.sequence > sequence) return Deferred.await(latest.result)
    return Effect.suspend(() => {
      const result = Deferred.unsafeMake<A, SqlError>(FiberId.none)
      this.latest = { sequence: nextSequence(), result }
      this.onRoundTrip()
      // in the router's scope: a reader interrupted while waiting does not cancel the lookup for the others
      return Effect.zipRight(
        Effect.forkIn(Effect.flatMap(Effect.exit(this.query), (exit) => Deferred.done(result, exit)), this.scope),
        Deferred.await(result)
      )
    })
  }
}
