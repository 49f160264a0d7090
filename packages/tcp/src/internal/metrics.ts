import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import type * as MetricKeyType from "effect/MetricKeyType"
import * as MetricLabel from "effect/MetricLabel"
import type * as Endpoint from "../Endpoint.js"

/** OpenTelemetry attribute names. @internal */
export const attributes = {
  poolName: "db.client.connection.pool.name",
  address: "server.address",
  port: "server.port",
  errorType: "error.type"
} as const

const seconds = MetricBoundaries.exponential({ start: 0.0001, factor: 2, count: 20 })

/** @internal */
export const keys = {
  created: MetricKey.counter("tcp.client.connection.created", {
    description: "Connections opened",
    incremental: true
  }),
  closed: MetricKey.counter("tcp.client.connection.closed", {
    description: "Connections closed",
    incremental: true
  }),
  reused: MetricKey.counter("tcp.client.connection.reused", {
    description: "Borrows served by a connection opened before",
    incremental: true
  }),
  errors: MetricKey.counter("tcp.client.connection.errors", {
    description: "Failed connect attempts, by error.type",
    incremental: true
  }),
  connectTime: MetricKey.histogram(
    "tcp.client.connection.create_time",
    seconds,
    "Time to open a connection (DNS, TCP, TLS, the protocol's handshake), in seconds"
  )
}

/**
 * One endpoint's metrics, tagged with `server.address` / `server.port` and the pool's name, built once per
 * endpoint (building a tagged key per update would cost more than the update).
 * @internal
 */
export const forEndpoint = (pool: string, endpoint: Endpoint.Endpoint) => {
  const labels = [
    MetricLabel.make(attributes.poolName, pool),
    MetricLabel.make(attributes.address, endpoint.host),
    MetricLabel.make(attributes.port, String(endpoint.port))
  ]
  const make = <Type extends MetricKeyType.MetricKeyType<any, any>>(
    key: MetricKey.MetricKey<Type>,
    ...extra: ReadonlyArray<MetricLabel.MetricLabel>
  ) => Metric.fromMetricKey(MetricKey.taggedWithLabels(key, [...labels, ...extra]))
  const errorsByType = new Map<string, ReturnType<typeof make<typeof keys.errors.keyType>>>()
  return {
    created: make(keys.created),
    closed: make(keys.closed),
    reused: make(keys.reused),
    connectTime: make(keys.connectTime),
    error(type: string) {
      let metric = errorsByType.get(type)
      if (metric === undefined) {
        metric = make(keys.errors, MetricLabel.make(attributes.errorType, type))
        errorsByType.set(type, metric)
      }
      return metric
    }
  }
}

/** @internal */
export type EndpointMetrics = ReturnType<typeof forEndpoint>
