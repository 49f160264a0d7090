/**
 * The typed failures of a pool. Every one is a `Data.TaggedError` with a readable `message`.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import { hasProperty } from "effect/Predicate"
import type { PoolStats } from "./PoolStats.js"
import { format } from "./PoolStats.js"

/**
 * `tryGet` found every connection in use and no room to open another.
 *
 * @since 0.1.0
 * @category errors
 */
export class PoolEmpty extends Data.TaggedError("PoolEmpty")<{
  readonly pool: string
  readonly stats: PoolStats
}> {
  override get message(): string {
    const s = this.stats
    const opening = s.pending > 0 ? ` and ${s.pending} opening` : ""
    return `pool "${this.pool}" is exhausted: ${s.inUse} of ${s.maxSize} connections in use${opening} (${format(s)})`
  }
}

/**
 * Overload shedding: a caller that found no idle connection and no room to open one was refused at once, rather
 * than queued behind a queue that could not drain in its `acquireTimeout`. A kind of `PoolEmpty` (it never waited,
 * and carries the stats), raised by `get` and `withConnection` when `maxWaiting` callers already wait
 * (`reason: "maxWaiting"`), or, under `shedOnExpectedWait`, when the queue's expected wait exceeds the caller's
 * `acquireTimeout` (`reason: "expectedWait"`).
 *
 * @since 0.3.0
 * @category errors
 */
export class PoolOverloaded extends Data.TaggedError("PoolOverloaded")<{
  readonly pool: string
  readonly reason: "maxWaiting" | "expectedWait"
  /** Callers waiting when this one arrived. */
  readonly waiting: number
  /** The `maxWaiting` option (`Infinity` when unlimited). */
  readonly maxWaiting: number
  /** For `"expectedWait"`: the wait expected from the queue's length and the recent mean use time. */
  readonly expectedWait?: Duration.Duration | undefined
  /** For `"expectedWait"`: the caller's `acquireTimeout`, which the expected wait exceeds. */
  readonly timeout?: Duration.Duration | undefined
  readonly stats: PoolStats
}> {
  override get message(): string {
    const why = this.reason === "maxWaiting"
      ? `${this.waiting} callers waiting, the limit (maxWaiting) is ${this.maxWaiting}`
      : `${this.waiting} callers waiting, expected wait ${Duration.format(this.expectedWait ?? Duration.zero)} ` +
        `exceeds acquireTimeout ${Duration.format(this.timeout ?? Duration.zero)}`
    return `pool "${this.pool}" is overloaded: ${why}; refused at once (${format(this.stats)})`
  }
}

/**
 * The pool was shut down, before the call or while it waited.
 *
 * @since 0.1.0
 * @category errors
 */
export class PoolClosed extends Data.TaggedError("PoolClosed")<{
  readonly pool: string
}> {
  override get message(): string {
    return `pool "${this.pool}" is closed`
  }
}

/**
 * No connection within `acquireTimeout`, which covers the whole acquire: waiting in the queue, a connect opened
 * for the caller, and validating the connection it got. `phase` says what the caller was doing when time ran out:
 * waiting for a connection to be released (`"waiting"`), for one being opened for it (`"connecting"`), or for the
 * driver's check of the one it was about to get (`"validating"`). `waitingMs`, `connectingMs` and `validatingMs`
 * split the time the acquire took (`waited`) between the three.
 *
 * @since 0.1.0
 * @category errors
 */
export class PoolTimeout extends Data.TaggedError("PoolTimeout")<{
  readonly pool: string
  readonly phase: "waiting" | "connecting" | "validating"
  /**
   * The limit that ran out: the caller's `acquireTimeout`, or `connectTimeout` for one connect (the caller's own
   * deadline may be longer).
   */
  readonly limit: "acquireTimeout" | "connectTimeout"
  readonly timeout: Duration.Duration
  /** How long the acquire took, all phases together. */
  readonly waited: Duration.Duration
  /** Of `waited`: queued for a connection to be released. */
  readonly waitingMs: number
  /** Of `waited`: queued while a connect started for this caller was opening. */
  readonly connectingMs: number
  /** Of `waited`: validating connections before lending them (a broken one is closed and the next one tried). */
  readonly validatingMs: number
  readonly stats: PoolStats
}> {
  override get message(): string {
    const what = this.phase === "connecting"
      ? "waiting for a new connection to open"
      : this.phase === "validating"
      ? "validating a connection"
      : "waiting for a connection to be released"
    const ms = (n: number) => Math.round(n) === 0 ? "0ms" : Duration.format(Duration.millis(Math.round(n)))
    return `pool "${this.pool}" timed out after ${Duration.format(this.waited)} ${what} ` +
      `(${this.limit} ${Duration.format(this.timeout)}; waiting ${ms(this.waitingMs)}, connecting ` +
      `${ms(this.connectingMs)}, validating ${ms(this.validatingMs)}; ${format(this.stats)})`
  }
}

/**
 * Opening a connection failed. Drivers build it with a `reason` that names the server (host, port, database) and
 * never contains a secret; the driver's own error is kept as `cause`.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConnectionError extends Data.TaggedError("ConnectionError")<{
  readonly reason: string
  readonly cause?: unknown
  /** How many connects were tried before giving up. */
  readonly attempts?: number | undefined
  /** The pool that tried, once the error has passed through one. */
  readonly pool?: string | undefined
  /**
   * The server refused for want of room (PostgreSQL's 53300 "too many connections"), not because it is down: the
   * pool holds its size at what is open and lets callers wait for a release instead of failing them.
   */
  readonly atCapacity?: boolean | undefined
  /** Set when the pool's circuit breaker is open: the caller was failed at once, with the last connect's error. */
  readonly breaker?: BreakerOpen | undefined
}> {
  override get message(): string {
    const prefix = this.pool === undefined ? "" : `pool "${this.pool}": `
    const attempts = this.attempts !== undefined && this.attempts > 1 ? ` (after ${this.attempts} attempts)` : ""
    const b = this.breaker
    const breaker = b === undefined ? "" : `circuit breaker open since ${new Date(b.openedAt).toISOString()} after ` +
      `${b.failures} connect failures in a row, next probe in ${Duration.format(Duration.millis(b.nextProbeInMs))}; last: `
    return `${prefix}${breaker}${this.reason}${attempts}`
  }
}

/**
 * A fiber that already holds a connection from this pool asked it for another, and the pool's `nested` option is
 * `"fail"`. Waiting could deadlock the pool: with `maxSize` fibers each doing so, every connection is held by a
 * fiber waiting for one more. Raised at once, never after a wait. (With the default `nested: "reuse"` the inner
 * borrow gets the connection the fiber holds instead.)
 *
 * @since 0.1.0
 * @category errors
 */
export class NestedAcquire extends Data.TaggedError("NestedAcquire")<{
  readonly pool: string
  /** The fiber that asked, as Effect names it (`#12`). */
  readonly fiber: string
}> {
  override get message(): string {
    return `pool "${this.pool}": fiber ${this.fiber} already holds a connection from this pool and asked for ` +
      `another (nested acquire); waiting for it could deadlock the pool. Use the connection it holds, or set ` +
      `nested: "reuse" to be given it`
  }
}

/**
 * The state of an open circuit breaker, as a `ConnectionError` reports it.
 *
 * @since 0.1.0
 * @category models
 */
export interface BreakerOpen {
  /** When it opened, in epoch milliseconds (the pool's `Clock`). */
  readonly openedAt: number
  /** Connect failures in a row so far. */
  readonly failures: number
  /** How long until the next probe, from when this error was made. */
  readonly nextProbeInMs: number
}

/**
 * An option was out of range. Raised by `make`, `layer`, `resize` and `reconfigure`, never clamped silently.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidConfig extends Data.TaggedError("InvalidConfig")<{
  readonly option: string
  readonly value: unknown
  readonly reason: string
}> {
  override get message(): string {
    return `invalid pool option ${this.option} = ${show(this.value)}: ${this.reason}`
  }
}

/** A value as the user wrote it: durations formatted, strings quoted, tuples bracketed. */
const show = (value: unknown): string =>
  Duration.isDuration(value)
    ? Duration.format(value)
    : typeof value === "string"
    ? JSON.stringify(value)
    : Array.isArray(value)
    ? `[${value.map(show).join(", ")}]`
    : String(value)

/**
 * Every failure an acquisition can end in.
 *
 * @since 0.1.0
 * @category errors
 */
export type PoolError = PoolEmpty | PoolOverloaded | PoolClosed | PoolTimeout | ConnectionError | NestedAcquire

const tags = new Set([
  "PoolEmpty",
  "PoolOverloaded",
  "PoolClosed",
  "PoolTimeout",
  "ConnectionError",
  "NestedAcquire",
  "InvalidConfig"
])

/**
 * @since 0.1.0
 * @category refinements
 */
export const isPoolError = (u: unknown): u is PoolError | InvalidConfig =>
  hasProperty(u, "_tag") && typeof u._tag === "string" && tags.has(u._tag)
