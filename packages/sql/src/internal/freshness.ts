import type { SqlError } from "@effect/sql/SqlError"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import type * as Scope from "effect/Scope"
import { nextSequence } from "./session.js"

/**
 * Position lookups on one server, shared by every reader they can serve. Sequence numbers order lookups after
 * writes (both are taken on the one JavaScript thread): a lookup sent after a write completed sees a position at
 * or past it. One lookup is in flight at a time; readers that cannot use it queue for the next, which all of them
 * share, so a busy router pays a round trip per round trip's worth of writes, not one per write.
 * @internal
 */
export class SharedLookup<A> {
  /** The last lookup sent, with its place in the order of events. */
  private latest: { readonly sequence: number; readonly result: Deferred.Deferred<A, SqlError> } | undefined
  /** The next lookup, sent when the one in flight is done. */
  private next: Deferred.Deferred<A, SqlError> | undefined
  private sending = false

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
      if (this.next !== undefined) return Deferred.await(this.next)
      const result = Deferred.unsafeMake<A, SqlError>(FiberId.none)
      this.next = result
      if (this.sending) return Deferred.await(result)
      this.sending = true
      // in the router's scope: a reader interrupted while waiting does not cancel the lookup for the others
      return Effect.zipRight(Effect.forkIn(this.sender, this.scope), Deferred.await(result))
    })
  }

  /** Sends the queued lookups one after another, until none is left. */
  private readonly sender: Effect.Effect<void> = Effect.whileLoop({
    while: () => {
      if (this.next === undefined) this.sending = false
      return this.next !== undefined
    },
    body: () =>
      Effect.suspend(() => {
        const result = this.next!
        this.next = undefined
        this.latest = { sequence: nextSequence(), result }
        this.onRoundTrip()
        return Effect.flatMap(Effect.exit(this.query), (exit) => Deferred.done(result, exit))
      }),
    step: () => {}
  })
}
