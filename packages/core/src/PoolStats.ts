/**
 * A point-in-time snapshot of a pool: its gauges and its counters since it was made.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 * @category models
 */
export interface PoolStats {
  /** The pool's name, as given in its options. */
  readonly name: string
  /** Open connections, in use or idle. `inUse + idle === total`. */
  readonly total: number
  readonly inUse: number
  readonly idle: number
  /** Connects in flight. */
  readonly pending: number
  /** Callers waiting for a connection. */
  readonly waiting: number
  readonly minSize: number
  readonly maxSize: number
  readonly closed: boolean
  /** Connections opened / closed since the pool was made. */
  readonly created: number
  readonly destroyed: number
  /** Successful acquisitions. `hits + misses === acquired`. */
  readonly acquired: number
  /** Acquisitions served by an existing connection. */
  readonly hits: number
  /** Acquisitions served by a connection opened for them. */
  readonly misses: number
  /** Acquisitions that ran out of `acquireTimeout` (`PoolTimeout`), in any phase; not a caller's own timeout. */
  readonly timeouts: number
  /** `tryGet` calls that failed with `PoolEmpty`. */
  readonly emptyFailures: number
  readonly connectFailures: number
  readonly validationFailures: number
  /** Time from asking to holding a connection, over every successful acquisition, in milliseconds. */
  readonly waitTimeMeanMs: number
  readonly waitTimeMaxMs: number
  /** The circuit breaker is open: callers that find no idle connection fail at once (see `breakerThreshold`). */
  readonly breakerOpen: boolean
  /** Connect failures since the last successful connect. */
  readonly consecutiveConnectFailures: number
  /**
   * How many connections the pool currently lets itself open: `maxSize`, or fewer while the server says it has no
   * room for more (see `ConnectionError.atCapacity`).
   */
  readonly ceiling: number
  /** Callers refused at once with `PoolOverloaded` (see `maxWaiting`, `shedOnExpectedWait`). */
  readonly overloadFailures: number
  /**
   * A moving mean of how long a connection is held, borrow to release, over roughly the last twenty releases, in
   * milliseconds; 0 until one was released. `shedOnExpectedWait` estimates waits from it.
   */
  readonly useTimeRecentMs: number
  /**
   * Borrows held past `leakDetectionThreshold` since the pool was made (each reported once), and how many of
   * them are still out. Both 0 while leak detection is off.
   */
  readonly leaksSuspected: number
  readonly leaked: number
}

/**
 * One line for logs and error messages.
 *
 * @since 0.1.0
 * @category formatting
 */
export const format = (stats: PoolStats): string =>
  `total=${stats.total} inUse=${stats.inUse} idle=${stats.idle} pending=${stats.pending} waiting=${stats.waiting} ` +
  `max=${stats.maxSize}${stats.ceiling < stats.maxSize ? ` ceiling=${stats.ceiling}` : ""}` +
  `${stats.breakerOpen ? " breaker=open" : ""}${stats.closed ? " closed" : ""}`
