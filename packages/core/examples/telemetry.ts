import { NodeSdk } from "@effect/opentelemetry"
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus"
import type { MetricReader } from "@opentelemetry/sdk-metrics"
import { BatchSpanProcessor, ConsoleSpanExporter, type SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Schedule } from "effect"
import { ConnectionPool as Pool } from "@connection-pool/core"

// A stand-in driver whose connects take 20 ms.
interface Conn {
  readonly id: number
}
let opened = 0
const driver: Pool.Driver<Conn> = {
  connect: Effect.delay(Effect.sync(() => ({ id: ++opened })), "20 millis"),
  close: (_conn) => Effect.void
}

class Db extends Pool.Tag("app/Db")<Db, Conn>() {}

export const DbLive = Db.layer({ name: "orders", driver, maxSize: 2 })

// Three checkouts at once on a pool of two. The first time, two wait for a connect and the third for a release;
// each of those waits is a `ConnectionPool.acquire` span, a child of its checkout's span. (Later, two are served
// at once from idle connections, and are not traced.)
export const checkouts = Effect.forEach(
  [1, 2, 3],
  (order) =>
    Db.withConnection((conn) => Effect.as(Effect.sleep("10 millis"), conn.id)).pipe(
      Effect.withSpan("checkout", { attributes: { order } })
    ),
  { concurrency: "unbounded" }
)

// @effect/opentelemetry hands Effect's metrics (the pool's `db.client.connection.*`) to a MetricReader, and
// makes OpenTelemetry the tracer of the program it is provided to.
export const TelemetryLive = (metricReader: MetricReader, spanProcessor: SpanProcessor) =>
  NodeSdk.layer(() => ({ resource: { serviceName: "orders" }, metricReader, spanProcessor }))

if (import.meta.url === `file://${process.argv[1]}`) {
  // metrics at http://127.0.0.1:9464/metrics for Prometheus to scrape; spans to the console (or an OTLP exporter)
  const telemetry = TelemetryLive(
    new PrometheusExporter({ host: "127.0.0.1", port: 9464 }),
    new BatchSpanProcessor(new ConsoleSpanExporter())
  )
  const every = Effect.repeat(checkouts, Schedule.spaced("1 second"))
  Effect.runPromise(every.pipe(Effect.provide(DbLive), Effect.provide(telemetry)))
}
