import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"
import { hasProperty } from "effect/Predicate"
import type { ReplicasUnavailable, WriteOnReplica } from "../SqlRouter.js"

/** Where the fiber's statements go. @internal */
export const currentRoute = globalValue(
  "@connection-pool/sql/currentRoute",
  () => FiberRef.unsafeMake<"write" | "read">("write")
)

let sequence = 0

/**
 * Orders events on the one JavaScript thread: a write completed (its result arrived) before any lookup whose
 * number is higher was sent.
 * @internal
 */
export const nextSequence = (): number => ++sequence

/**
 * The last write a reader must see: when it completed (clock millis, for the time window), its sequence number,
 * and, once known, the primary's position at or after it. A session's token is one shared, mutable box; a
 * fiber's own is replaced on each write.
 * @internal
 */
export class Token {
  constructor(
    public writtenAt: number,
    public sequence: number,
    public position: bigint | undefined,
    readonly shared: boolean
  ) {}

  /** When `position` was learned: a replica asked after that has had a round trip's time to replay it. */
  learnedAt = 0

  learn(position: bigint): bigint {
    this.position = position
    this.learnedAt = nextSequence()
    return position
  }
}

/** @internal */
export const currentToken = globalValue(
  "@connection-pool/sql/currentToken",
  () =>
    FiberRef.unsafeMake<Token | undefined>(undefined, {
      // a child sees its parent's writes; when joined, the parent sees the child's (the later write wins)
      join: (parent, child) =>
        child === undefined || (parent !== undefined && parent.writtenAt >= child.writtenAt) ? parent : child
    })
)

/** Records a completed write for the fiber (or its session). @internal */
export const recordWrite = (fiber: Fiber.RuntimeFiber<unknown, unknown>, now: number): Effect.Effect<void> => {
  const token = fiber.getFiberRef(currentToken)
  if (token?.shared !== true) return FiberRef.set(currentToken, new Token(now, nextSequence(), undefined, false))
  token.writtenAt = now
  token.sequence = nextSequence()
  token.position = undefined
  return Effect.void
}

/** Router errors travel as an SqlError's cause through @effect/sql (its statements fail with SqlError only). */
const routerCause = (e: unknown): ReplicasUnavailable | WriteOnReplica | undefined => {
  if (!(e instanceof SqlError)) return undefined
  const cause = e.cause
  return hasProperty(cause, "_tag") && (cause._tag === "ReplicasUnavailable" || cause._tag === "WriteOnReplica")
    ? cause as ReplicasUnavailable | WriteOnReplica
    : undefined
}

/** @internal */
export const withRead = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | ReplicasUnavailable | WriteOnReplica, R> =>
  Effect.locally(effect, currentRoute, "read").pipe(
    Effect.catchIf((e) => routerCause(e) !== undefined, (e) => Effect.fail(routerCause(e)!))
  )

/** @internal */
export const withWrite = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.locally(effect, currentRoute, "write")

/** @internal */
export const session = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(FiberRef.get(currentToken), (outer) =>
    Effect.locally(
      effect,
      currentToken,
      new Token(outer?.writtenAt ?? -Infinity, outer?.sequence ?? 0, outer?.position, true)
    ))
