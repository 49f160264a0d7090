import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Tracer from "effect/Tracer"
import type { PoolError } from "../PoolError.js"
import type { Budget } from "./deadline.js"
import type { Entry } from "./state.js"
import type { Closing } from "./transitions.js"

/** A waiter's `status`; written only by the transitions in `transitions.ts`. @internal */
export const WAITING = 0
/** @internal */
export const TAKEN = 1
/** @internal */
export const CANCELLED = 2

/**
 * A caller waiting for a connection. Lighter than a `Deferred` (which copies a prototype per instance, and showed
 * as 35% GC time with 1000 waiting fibers): a result slot and the fiber's resume callback.
 *
 * @internal
 */
export class Waiter<A> {
  /** WAITING until a transaction takes it (then it will be completed) or its caller cancels it. */
  status: 0 | 1 | 2 = WAITING
  result: Exit.Exit<Entry<A>, PoolError> | undefined = undefined
  resume: ((exit: Exit.Exit<Entry<A>, PoolError>) => void) | undefined = undefined
  constructor(
    readonly since: number,
    readonly start: bigint,
    readonly deadline: number,
    /** In the queue and counted in `waiting`; `tryGet`'s waiter is neither. */
    readonly queued: boolean,
    /** A connect was started when this waiter arrived. */
    public spawned: boolean
  ) {}

  /** Set for `withConnectionCallback`: whoever hands this waiter a connection starts the operation on it. */
  job: Job<A> | undefined = undefined
  /** Set by the transaction that queued it: connects to start, whether to wake the sweeper, whether to trace. */
  spawn = 0
  wake = false
  traced = false
  /** What its acquire spent before it queued (validating a broken connection); set off the hot path only. */
  budget: Budget | undefined = undefined

  /**
   * Called once, by whoever took the waiter in a transaction. Once a job is attached, it gets the failures; a
   * connection goes to `Job.run` instead. (Before, the waiter keeps the result for its caller to find.)
   */
  complete(exit: Exit.Exit<Entry<A>, PoolError>): void {
    if (this.job !== undefined) return this.job.settle(exit as Exit.Exit<never, PoolError>)
    this.result = exit
    const resume = this.resume
    this.resume = undefined
    if (resume !== undefined) resume(exit)
  }

  /** The result, for a canceller that lost the race with the transaction that took this waiter. */
  get outcome(): Effect.Effect<Entry<A>, PoolError> {
    return Effect.async((resume) => {
      if (this.result !== undefined) return resume(this.result)
      this.resume = resume
    })
  }
}

/** A callback-style operation, as `withConnectionCallback` takes it. @internal */
export type Start<A> = (conn: A, done: (exit: Exit.Exit<unknown, unknown>) => void) => Effect.Effect<void> | void

/** How a job's caller stops waiting: a pool failure (it never got a connection), or its operation's exit. @internal */
export type JobResult = Exit.Exit<Exit.Exit<unknown, unknown>, PoolError>

/** Who gives a job's connection back: nobody yet, its `done` callback (`callback.releaseInDone`), or its caller. */
export const UNRELEASED = 0
/** @internal */
export const RELEASED_IN_DONE = 1
/** @internal */
export const CALLER_RELEASES = 2

/**
 * A `withConnectionCallback` operation. Whoever hands its caller a connection starts it right there (`run`), so
 * the caller is woken once, when the operation is done, rather than once for the connection and once more for
 * the operation. When it is done, its `done` callback gives the connection back there and then (`onDone`), so
 * a job queued for it starts before the caller's fiber is even scheduled.
 *
 * @internal
 */
export class Job<A> {
  /** The connection it runs on, once started. */
  entry: Entry<A> | undefined = undefined
  /** Its caller was interrupted after a release took it but before the operation started: not started at all. */
  abandoned = false
  finished = false
  canceler: Effect.Effect<void> | void = undefined
  result: JobResult | undefined = undefined
  resume: ((result: JobResult) => void) | undefined = undefined
  /** The `ConnectionPool.acquire` span of a traced wait, ended when the connection is handed over. */
  span: Tracer.Span | undefined = undefined
  /** `UNRELEASED`, `RELEASED_IN_DONE` or `CALLER_RELEASES`: set once, so a connection is given back once. */
  released: 0 | 1 | 2 = UNRELEASED
  /** Set while `start` runs: a `done` called from inside it leaves the release to the caller (no recursion). */
  starting = false
  /** What the release in `done` left to the caller's fiber: a connection to close (it takes effects). */
  closing: Closing<A> | undefined = undefined
  constructor(
    readonly start: Start<A>,
    readonly clock: Clock.Clock,
    /** Gives the connection back from inside `done`, once the operation is over. */
    readonly onDone: (job: Job<A>, exit: Exit.Exit<unknown, unknown>) => void
  ) {}

  settle(result: JobResult): void {
    if (this.result !== undefined) return
    this.endSpan(result)
    this.result = result
    const resume = this.resume
    this.resume = undefined
    if (resume !== undefined) resume(result)
  }

  /** Starts the operation on `entry`; a `start` that throws is a defect of the operation. */
  run(entry: Entry<A>): void {
    this.entry = entry
    this.endSpan(Exit.void)
    const done = (exit: Exit.Exit<unknown, unknown>) => {
      if (this.finished) return
      this.finished = true
      if (!this.starting && this.released === UNRELEASED) this.onDone(this, exit)
      this.settle(Exit.succeed(exit))
    }
    this.starting = true
    try {
      this.canceler = this.start(entry.conn, done)
    } catch (defect) {
      done(Exit.die(defect))
    } finally {
      this.starting = false
    }
  }

  endSpan(exit: Exit.Exit<unknown, unknown>): void {
    const span = this.span
    if (span === undefined) return
    this.span = undefined
    span.end(this.clock.unsafeCurrentTimeNanos(), exit)
  }
}
