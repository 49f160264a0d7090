import { NodeSdk } from "@effect/opentelemetry"
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus"
import type { ResourceMetrics } from "@opentelemetry/sdk-metrics"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect } from "effect"
import * as net from "node:net"

const freePort = Effect.async<number>((resume) => {
  const server = net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/**
 * A `PrometheusExporter` whose own HTTP server listens on a free loopback port. It reads `port: 0` as "unset" (and
 * takes the default 9464), so a free port is found first, and again should something take it in between.
 */
export const prometheus = Effect.retry(
  Effect.flatMap(freePort, (port) =>
    Effect.async<{ readonly exporter: PrometheusExporter; readonly port: number }, Error>((resume) => {
      const exporter: PrometheusExporter = new PrometheusExporter(
        { host: "127.0.0.1", port },
        (error) => resume(error ? Effect.fail(error) : Effect.succeed({ exporter, port }))
      )
    })),
  { times: 5 }
)

/** Scrapes a Prometheus endpoint over HTTP, as a Prometheus server would. */
export const scrape = (port: number) =>
  Effect.promise(async () => {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`)
    if (response.status !== 200) throw new Error(`scrape answered ${response.status}`)
    return response.text()
  })

export interface Telemetry {
  /** What Prometheus would read now. */
  readonly scrape: Effect.Effect<string>
  /** What the exporter collects now, as OpenTelemetry data (instrument kinds and units included). */
  readonly collect: Effect.Effect<ResourceMetrics>
  /** The spans ended so far. */
  readonly spans: () => ReadonlyArray<ReadableSpan>
}

/**
 * Runs `body` with @effect/opentelemetry's NodeSdk as Effect's tracer and metric bridge: metrics to a
 * `PrometheusExporter` serving HTTP on loopback, spans to an `InMemorySpanExporter`.
 */
export const withTelemetry = <A, E, R>(body: (telemetry: Telemetry) => Effect.Effect<A, E, R>) =>
  Effect.flatMap(prometheus, ({ exporter, port }) => {
    const spans = new InMemorySpanExporter()
    const collect = Effect.promise(() => exporter.collect()).pipe(Effect.map((result) => result.resourceMetrics))
    return body({ scrape: scrape(port), collect, spans: () => spans.getFinishedSpans() }).pipe(
      Effect.provide(NodeSdk.layer(() => ({
        resource: { serviceName: "connection-pool-test" },
        metricReader: exporter,
        spanProcessor: new SimpleSpanProcessor(spans)
      })))
    )
  })
