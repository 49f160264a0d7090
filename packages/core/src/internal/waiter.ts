import type * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Tracer from "effect/Tracer"
import type { PoolError } from "../PoolError.js"
import type { Budget } from "./deadline.js"
import type { Entry } from "./state.js"
import type { FailureFrame } from "./step.js"

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
    /** When it began to wait, on `PoolImpl.preciseMs`'s clock. */
    readonly start: number,
    /** Pulled in by `reconfigure` when `acquireTimeout` shrinks; never pushed out. */
    public deadline: number,
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
    if (this.job !== undefined) return this.job.settle(exit)
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

/**
 * What a job's caller continues with once it stops waiting: a pool failure (it never got a connection), its
 * operation's exit, or an effect that first does what giving the connection back still takes (`Job.owed`) and
 * then is that exit.
 *
 * @internal
 */
export type Outcome = Effect.Effect<unknown, unknown>

/**
 * Who gives a job's connection back: nobody yet, its `done` callback (`callback.releaseInDone`), its caller
 * (interrupted while the operation ran), or, for a `done` called inside `start` (a synchronous driver), whoever
 * started it, once `start` has returned (`callback.startedDone`): from inside `start` it would recurse through
 * every queued job.
 */
export const UNRELEASED = 0
/** @internal */
export const RELEASED_IN_DONE = 1
/** @internal */
export const CALLER_RELEASES = 2
/** @internal */
export const DONE_IN_START = 3

/**
 * A `withConnectionCallback` operation. Whoever hands its caller a connection starts it right there (`run`), so
 * the caller is woken once, when the operation is done, rather than once for the connection and once more for
 * the operation. When it is done, its `done` callback gives the connection back there and then (`onDone`), so
 * a job queued for it starts before the caller's fiber is even scheduled, and the caller is resumed with the
 * operation's exit as is.
 *
 * @internal
 */
export class Job<A> implements FailureFrame {
  /** The connection it runs on, once started. */
  entry: Entry<A> | undefined = undefined
  /** Its caller was interrupted after a release took it but before the operation started: not started at all. */
  abandoned = false
  finished = false
  canceler: Effect.Effect<void> | void = undefined
  /** What the caller continues with, once known (see `Outcome`); set once. */
  outcome: Outcome | undefined = undefined
  /** The suspended caller's resume, while it waits. */
  resume: ((outcome: Outcome) => void) | undefined = undefined
  /** The `ConnectionPool.acquire` span of a traced wait, ended when the connection is handed over. */
  span: Tracer.Span | undefined = undefined
  /** `UNRELEASED`, then one of the others (`DONE_IN_START` only until its starter acts on it). */
  released: 0 | 1 | 2 | 3 = UNRELEASED
  /** Set while `start` runs: a `done` called from inside it leaves the release to its starter (`DONE_IN_START`). */
  starting = false
  /**
   * What giving the connection back still takes in the caller's fiber (effects: closing it, or a release `done`
   * could not make). Taken once: by the outcome, or by the caller's interruption handler when the interruption
   * reached the fiber first (an interrupted fiber drops the resume that would have run the outcome).
   */
  owed: Effect.Effect<void> | undefined = undefined
  /** The operation's `done`, bound to this job once it starts. */
  done: ((exit: Exit.Exit<unknown, unknown>) => void) | undefined = undefined
  /** The waiter it was queued as, if it was. */
  waiter: Waiter<A> | undefined = undefined
  /**
   * A job is also the frame of its caller's wait (`step.pushFrame`): effect's `OnFailure` continuation, whose
   * handler is `effect_instruction_i1`.
   */
  readonly _op = "OnFailure"
  constructor(
    readonly start: Start<A>,
    readonly clock: Clock.Clock,
    /** Gives the connection back from inside `done`, once the operation is over; returns the caller's outcome. */
    readonly onDone: (job: Job<A>, exit: Exit.Exit<unknown, unknown>) => Outcome,
    /** What the caller does when its wait fails: interrupted, or the operation failed (`callback.waitFailed`). */
    readonly onFailure: (job: Job<A>, cause: Cause.Cause<unknown>) => Outcome
  ) {}

  /** The wait's failure handler, as the fiber calls it on the frame. */
  effect_instruction_i1(cause: Cause.Cause<unknown>): Outcome {
    return this.onFailure(this, cause)
  }

  settle(outcome: Outcome): void {
    if (this.outcome !== undefined) return
    if (this.span !== undefined) this.endSpan(Exit.isExit(outcome) ? outcome : Exit.void)
    this.outcome = outcome
    const resume = this.resume
    this.resume = undefined
    if (resume !== undefined) resume(outcome)
  }

  /** Starts the operation on `entry`; a `start` that throws is a defect of the operation. */
  run(entry: Entry<A>): void {
    this.entry = entry
    if (this.span !== undefined) this.endSpan(Exit.void)
    // bound rather than a closure: one function per job, and no `__name` call where the code runs under tsx
    const done = this.done = (finish as (this: Job<A>, exit: Exit.Exit<unknown, unknown>) => void).bind(this)
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

/** A job's `done`: the first call ends it. */
function finish(this: Job<any>, exit: Exit.Exit<unknown, unknown>): void {
  if (this.finished) return
  this.finished = true
  this.settle(this.onDone(this, exit))
}
