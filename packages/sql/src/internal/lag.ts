import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import type * as SqlRouter from "../SqlRouter.js"
import type { Member } from "./member.js"
import { nextSequence } from "./session.js"

/** Lag settings, resolved to millis. @internal */
export interface LagPolicy {
  readonly maxLag: number
  readonly rejoinLag: number
  readonly interval: number
  readonly timeout: number
}

/** @internal */
export interface Sample {
  /** Clock millis when the position query was sent. */
  readonly at: number
  /** Its place in the order of writes and lookups (see `nextSequence`). */
  readonly sequence: number
  readonly position: bigint
}

/**
 * The primary's recent positions, oldest first: a replica's lag in time is how long ago the primary was at a
 * position the replica has not replayed yet.
 * @internal
 */
export class History {
  readonly samples: Array<Sample> = []
  constructor(readonly keep: number) {}

  push(sample: Sample): void {
    this.samples.push(sample)
    if (this.samples.length > this.keep) this.samples.splice(0, this.samples.length - this.keep)
  }

  get latest(): Sample | undefined {
    return this.samples[this.samples.length - 1]
  }

  /** The first sample sent after event `sequence`: every write completed by then is at or before its position. */
  after(sequence: number): Sample | undefined {
    for (let i = this.samples.length - 1; i >= 0; i--) {
      const s = this.samples[i]!
      if (s.sequence <= sequence) return this.samples[i + 1]
    }
    return this.samples[0]
  }

  /** Lag of a replica that replayed up to `position`, at `now`. */
  lag(position: bigint, now: number): { readonly millis: number; readonly bytes: number } {
    const latest = this.latest
    if (latest === undefined || position >= latest.position) return { millis: 0, bytes: 0 }
    const behind = this.samples.find((s) => s.position > position)!
    return { millis: Math.max(0, now - behind.at), bytes: Number(latest.position - position) }
  }
}

const describe = (e: unknown): string =>
  typeof e === "object" && e !== null && "message" in e ? String((e as { message: unknown }).message) : String(e)

/** Samples the primary's position every interval, for every replica's lag and for read-your-writes. @internal */
export const sampler = (
  primary: Member,
  replication: SqlRouter.Replication,
  history: History,
  policy: LagPolicy
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const at = yield* Clock.currentTimeMillis
    const sequence = nextSequence()
    const position = yield* replication.primaryPosition(primary.client).pipe(
      Effect.timeout(Duration.millis(policy.timeout))
    )
    history.push({ at, sequence, position })
  }).pipe(
    Effect.catchAllCause((cause) => Effect.logDebug("primary position sample failed", cause)),
    Effect.repeat(Schedule.spaced(Duration.millis(policy.interval))),
    Effect.asVoid
  )

/**
 * Sets the replica's status from one measurement, with hysteresis: past `maxLag` it is skipped, and it comes
 * back only under `rejoinLag`.
 * @internal
 */
export const judge = (member: Member, lagMillis: number, policy: LagPolicy): void => {
  const wasUsable = member.status === "up"
  if (wasUsable ? lagMillis > policy.maxLag : lagMillis > policy.rejoinLag) {
    member.status = "lagging"
    member.reason = `${Math.round(lagMillis)} ms behind the primary (maxLag ${policy.maxLag} ms)`
  } else {
    member.status = "up"
    member.reason = undefined
  }
}

/** @internal */
export const markDown = (member: Member, why: string): void => {
  member.status = "down"
  member.reason = why
}

/** Measures one replica's lag every interval (off the request path). @internal */
export const watcher = (
  replica: Member,
  replication: SqlRouter.Replication,
  history: History,
  policy: LagPolicy
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const result = yield* replication.replicaPosition(replica.client).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(policy.timeout),
        onTimeout: () => new Error(`lag probe took longer than ${policy.timeout} ms`)
      }),
      Effect.either
    )
    if (result._tag === "Left") return markDown(replica, `unreachable: ${describe(result.left)}`)
    const { inRecovery, position } = result.right
    if (!inRecovery) {
      replica.status = "promoted"
      replica.reason = "not in recovery: promoted, or not a replica"
      return
    }
    const now = yield* Clock.currentTimeMillis
    // a replica that has replayed nothing yet is as far behind as the oldest sample
    const lag = history.lag(position ?? -1n, now)
    replica.position = position
    replica.lagMillis = lag.millis
    replica.lagBytes = lag.bytes
    yield* Metric.set(replica.lagGauge, lag.millis / 1000)
    judge(replica, lag.millis, policy)
  }).pipe(
    Effect.repeat(Schedule.spaced(Duration.millis(policy.interval))),
    Effect.asVoid
  )

/** Without replication positions: a replica is up while `SELECT 1` answers. @internal */
export const pinger = (replica: Member, policy: LagPolicy): Effect.Effect<void> =>
  replica.client.unsafe("SELECT 1").pipe(
    Effect.timeout(Duration.millis(policy.timeout)),
    Effect.match({
      onFailure: (e) => markDown(replica, `unreachable: ${describe(e)}`),
      onSuccess: () => {
        replica.status = "up"
        replica.reason = undefined
      }
    }),
    Effect.repeat(Schedule.spaced(Duration.millis(policy.interval))),
    Effect.asVoid
  )
