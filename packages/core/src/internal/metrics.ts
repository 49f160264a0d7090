import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import type * as MetricKeyType from "effect/MetricKeyType"
import * as MetricLabel from "effect/MetricLabel"

// Names and attributes follow OpenTelemetry's `db.client.connection.*` semantic conventions.
/** @internal */
export const attributes = {
  poolName: "db.client.connection.pool.name",
  state: "db.client.connection.state"
} as const

const seconds = MetricBoundaries.exponential({ start: 0.0001, factor: 2, count: 20 })

/** @internal */
export const keys = {
  count: MetricKey.gauge("db.client.connection.count", { description: "Connections open, by state (idle or used)" }),
  pendingRequests: MetricKey.gauge("db.client.connection.pending_requests", {
    description: "Callers waiting for a connection"
  }),
  max: MetricKey.gauge("db.client.connection.max", { description: "Maximum open connections allowed" }),
  idleMin: MetricKey.gauge("db.client.connection.idle.min", { description: "Minimum connections kept open" }),
  breakerOpen: MetricKey.gauge("db.client.connection.breaker.open", {
    description: "1 while the pool's circuit breaker is open (connects failing), else 0"
  }),
  timeouts: MetricKey.counter("db.client.connection.timeouts", {
    description: "Acquisitions that timed out",
    incremental: true
  }),
  leaks: MetricKey.counter("db.client.connection.leaks", {
    description: "Borrows held longer than leakDetectionThreshold (suspected leaks)",
    incremental: true
  }),
  createTime: MetricKey.histogram(
    "db.client.connection.create_time",
    seconds,
    "Time to open a connection, in seconds"
  ),
  waitTime: MetricKey.histogram(
    "db.client.connection.wait_time",
    seconds,
    "Time to obtain a connection from the pool, in seconds"
  ),
  useTime: MetricKey.histogram(
    "db.client.connection.use_time",
    seconds,
    "Time between borrowing a connection and returning it, in seconds"
  )
}

/**
 * The pool's metrics, with its name in their keys. (`Metric.tagged` would build a new key on every update, which
 * costs more than the rest of an acquire.)
 * @internal
 */
export const forPool = (name: string) => {
  const pool = MetricLabel.make(attributes.poolName, name)
  const make = <Type extends MetricKeyType.MetricKeyType<any, any>>(
    key: MetricKey.MetricKey<Type>,
    ...labels: ReadonlyArray<MetricLabel.MetricLabel>
  ) => Metric.fromMetricKey(MetricKey.taggedWithLabels(key, [pool, ...labels]))
  return {
    used: make(keys.count, MetricLabel.make(attributes.state, "used")),
    idle: make(keys.count, MetricLabel.make(attributes.state, "idle")),
    pendingRequests: make(keys.pendingRequests),
    max: make(keys.max),
    idleMin: make(keys.idleMin),
    breakerOpen: make(keys.breakerOpen),
    timeouts: make(keys.timeouts),
    leaks: make(keys.leaks),
    createTime: make(keys.createTime),
    waitTime: make(keys.waitTime),
    useTime: make(keys.useTime)
  }
}

/** @internal */
export type PoolMetrics = ReturnType<typeof forPool>
