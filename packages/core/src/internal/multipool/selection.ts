import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import type * as MultiPool from "../../MultiPool.js"

/** What selection sees of a server. @internal */
export interface Candidate {
  readonly index: number
  readonly name: string
  /** Borrowed through the multi-pool right now, waiting or holding. */
  readonly inUse: number
}

/**
 * Picks one of `candidates` (never empty, in server order). Round-robin takes the first usable server at or after
 * its cursor and moves the cursor past it, so the turns of a skipped server are shared by the others.
 * @internal
 */
export const make = (selection: MultiPool.Selection, total: number) => {
  let cursor = 0
  const roundRobin = (candidates: ReadonlyArray<Candidate>): Candidate => {
    const chosen = candidates.find((c) => c.index >= cursor) ?? candidates[0]!
    cursor = (chosen.index + 1) % total
    return chosen
  }
  const pick = (candidates: ReadonlyArray<Candidate>): Effect.Effect<Candidate> => {
    if (candidates.length === 1) {
      if (selection === "round-robin") cursor = (candidates[0]!.index + 1) % total
      return Effect.succeed(candidates[0]!)
    }
    switch (selection) {
      case "round-robin":
        return Effect.succeed(roundRobin(candidates))
      case "random":
        return Effect.map(Random.nextIntBetween(0, candidates.length), (i) => candidates[i]!)
      case "least-in-use": {
        let best = candidates[0]!
        for (const c of candidates) if (c.inUse < best.inUse) best = c
        // ties go round-robin, so an idle fleet still spreads
        const tied = candidates.filter((c) => c.inUse === best.inUse)
        return Effect.succeed(tied.length > 1 ? roundRobin(tied) : best)
      }
      default:
        return Effect.suspend(() => {
          const i = selection(candidates)
          const chosen = candidates.find((c) => c.index === i)
          return chosen === undefined
            ? Effect.dieMessage(
              `MultiPool selection function returned ${String(i)}, not the index of a usable server ` +
                `(${candidates.map((c) => c.index).join(", ")})`
            )
            : Effect.succeed(chosen)
        })
    }
  }

  /** A failover landed on server `index`: round-robin's next turn is the one after it. */
  const failedOverTo = (index: number): void => {
    if (selection === "round-robin") cursor = (index + 1) % total
  }
  return { pick, failedOverTo }
}
