import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import type * as MetricKeyType from "effect/MetricKeyType"
import * as MetricLabel from "effect/MetricLabel"

// Names, instruments and units follow OpenTelemetry's `db.client.connection.*` semantic conventions, as far as
// effect's metrics and @effect/opentelemetry (0.64) can say them:
// - an UpDownCounter is effect's non-incremental counter, updated by deltas (a gauge would be an OTel Gauge);
// - a unit is read from a `unit` tag, which therefore also shows as an attribute of every point;
// - the breaker's state and the leak count are no convention's: they are named in this project's namespace,
//   `connection_pool.*`.

/** @internal */
export const attributes = {
  poolName: "db.client.connection.pool.name",
  state: "db.client.connection.state",
  /** What @effect/opentelemetry makes the instrument's unit of. */
  unit: "unit"
} as const

/** @internal */
export const units = { connection: "{connection}", request: "{request}", timeout: "{timeout}", seconds: "s" } as const

/**
 * Seconds, 1-2-5 from 100 µs to 500 s: an acquire served from idle takes microseconds, a connect milliseconds, and
 * a wait up to `acquireTimeout` (30 s by default) still lands in a finite bucket.
 *
 * @internal
 */
export const secondsBoundaries: ReadonlyArray<number> = [
  0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500
]
const seconds = MetricBoundaries.fromIterable(secondsBoundaries)

/** An OpenTelemetry UpDownCounter: updated by deltas, which may be negative. */
const upDown = (name: string, description: string) =>
  MetricKey.counter(name, { description, bigint: false, incremental: false })

/** @internal */
export const keys = {
  count: upDown("db.client.connection.count", "Connections open, by state (idle or used)"),
  pendingRequests: upDown("db.client.connection.pending_requests", "Callers waiting for a connection"),
  max: upDown("db.client.connection.max", "Maximum open connections allowed (maxSize)"),
  limit: upDown("db.client.connection.limit", "Maximum open connections allowed (maxSize); the newer name of .max"),
  idleMax: upDown("db.client.connection.idle.max", "Maximum idle connections allowed (maxSize)"),
  idleMin: upDown("db.client.connection.idle.min", "Minimum connections kept open (minSize)"),
  breakerOpen: upDown(
    "connection_pool.breaker.open",
    "1 while the pool's circuit breaker is open (connects failing), else 0"
  ),
  timeouts: MetricKey.counter("db.client.connection.timeouts", {
    description: "Acquisitions that timed out (acquireTimeout)",
    incremental: true
  }),
  overloaded: MetricKey.counter("db.client.connection.overloaded", {
    description: "Acquisitions refused at once by overload shedding (maxWaiting, shedOnExpectedWait)",
    incremental: true
  }),
  leaks: MetricKey.counter("connection_pool.leaks", {
    description: "Borrows held longer than leakDetectionThreshold (suspected leaks)",
    incremental: true
  }),
  createTime: MetricKey.histogram("db.client.connection.create_time", seconds, "Time to open a connection"),
  waitTime: MetricKey.histogram("db.client.connection.wait_time", seconds, "Time to obtain a connection from the pool"),
  useTime: MetricKey.histogram(
    "db.client.connection.use_time",
    seconds,
    "Time between borrowing a connection and returning it"
  )
}

/**
 * The pool's metrics, with its name and the unit in their keys. (`Metric.tagged` would build a new key on every
 * update, which costs more than the rest of an acquire.) Every series is registered here, at zero, so that it is
 * exported from the pool's start rather than from its first event.
 *
 * @internal
 */
export const forPool = (name: string) => {
  const pool = MetricLabel.make(attributes.poolName, name)
  const make = <Type extends MetricKeyType.MetricKeyType<any, any>>(
    key: MetricKey.MetricKey<Type>,
    unit: string | undefined,
    ...labels: ReadonlyArray<MetricLabel.MetricLabel>
  ) => {
    const tags = unit === undefined ? [pool, ...labels] : [pool, MetricLabel.make(attributes.unit, unit), ...labels]
    const metric = Metric.fromMetricKey(MetricKey.taggedWithLabels(key, tags))
    metric.unsafeValue([])
    return metric
  }
  return {
    used: make(keys.count, units.connection, MetricLabel.make(attributes.state, "used")),
    idle: make(keys.count, units.connection, MetricLabel.make(attributes.state, "idle")),
    pendingRequests: make(keys.pendingRequests, units.request),
    max: make(keys.max, units.connection),
    limit: make(keys.limit, units.connection),
    idleMax: make(keys.idleMax, units.connection),
    idleMin: make(keys.idleMin, units.connection),
    breakerOpen: make(keys.breakerOpen, undefined),
    timeouts: make(keys.timeouts, units.timeout),
    overloaded: make(keys.overloaded, units.request),
    leaks: make(keys.leaks, units.connection),
    createTime: make(keys.createTime, units.seconds),
    waitTime: make(keys.waitTime, units.seconds),
    useTime: make(keys.useTime, units.seconds),
    /** The sizes last added to the limit counters, taken back when the pool closes. */
    published: { minSize: 0, maxSize: 0, closed: false }
  }
}

/** @internal */
export type PoolMetrics = ReturnType<typeof forPool>
