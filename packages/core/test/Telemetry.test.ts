import { assert, describe, it } from "@effect/vitest"
import { SpanKind, SpanStatusCode } from "@opentelemetry/api"
import { DataPointType } from "@opentelemetry/sdk-metrics"
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import { ConnectionPool } from "../src/index.js"
import { withTelemetry } from "./otel.js"
import { adjust, eventually, hold, makeDriver, settle } from "./utils.js"

// What Prometheus reads: OTel's dots become underscores (in names and attribute keys), a monotonic sum gets
// `_total`, an UpDownCounter (a non-monotonic sum) and a gauge are both `gauge`, a histogram `_bucket`
// (cumulative, `le` upper bounds), `_sum` and `_count`; every sample carries the instrumentation scope. The unit
// is on a `# UNIT` line, not a suffix; @effect/opentelemetry takes it from a `unit` attribute, which every sample
// of the pool therefore carries too.
const scope = `otel_scope_name="@effect/opentelemetry/Metrics"`
const of = (pool: string, unit: string | undefined, labels = "", le?: string) =>
  `{db_client_connection_pool_name="${pool}"${unit === undefined ? "" : `,unit="${unit}"`}${labels},${scope}` +
  `${le === undefined ? "" : `,le="${le}"`}}`
const conns = (pool: string, labels = "") => of(pool, "{connection}", labels)
const secs = (pool: string, le?: string) => of(pool, "s", "", le)
const used = `,db_client_connection_state="used"`
const idle = `,db_client_connection_state="idle"`

/** The sample lines of a scrape about one pool. */
const about = (text: string, pool: string) =>
  text.split("\n").filter((line) => line.includes(`db_client_connection_pool_name="${pool}"`))

/** The value of one sample, parsed back. */
const value = (text: string, series: string): number => {
  const line = text.split("\n").find((line) => line.startsWith(`${series} `))
  if (line === undefined) throw new Error(`no sample ${series} in the scrape`)
  return Number(line.slice(series.length + 1))
}

/** The OpenTelemetry convention for each instrument: kind and unit. */
const convention: ReadonlyArray<readonly [name: string, type: string, unit: string]> = [
  ["db.client.connection.count", "UP_DOWN_COUNTER", "{connection}"],
  ["db.client.connection.pending_requests", "UP_DOWN_COUNTER", "{request}"],
  ["db.client.connection.max", "UP_DOWN_COUNTER", "{connection}"],
  ["db.client.connection.limit", "UP_DOWN_COUNTER", "{connection}"],
  ["db.client.connection.idle.max", "UP_DOWN_COUNTER", "{connection}"],
  ["db.client.connection.idle.min", "UP_DOWN_COUNTER", "{connection}"],
  ["db.client.connection.timeouts", "COUNTER", "{timeout}"],
  ["db.client.connection.create_time", "HISTOGRAM", "s"],
  ["db.client.connection.wait_time", "HISTOGRAM", "s"],
  ["db.client.connection.use_time", "HISTOGRAM", "s"],
  ["connection_pool.breaker.open", "UP_DOWN_COUNTER", "1"]
]

describe("Telemetry: the pool's metrics through OpenTelemetry's Prometheus exporter, scraped over HTTP", () => {
  it.scoped("every series is exported from the pool's start, with the convention's instrument kind and unit", () =>
    withTelemetry((otel) =>
      Effect.gen(function*() {
        yield* ConnectionPool.make({ name: "fresh", driver: makeDriver().driver, minSize: 0, maxSize: 4 })
        // before any borrow, any connect, any wait
        const text = yield* otel.scrape
        assert.includeMembers(about(text, "fresh"), [
          `db_client_connection_count${conns("fresh", used)} 0`,
          `db_client_connection_count${conns("fresh", idle)} 0`,
          `db_client_connection_pending_requests${of("fresh", "{request}")} 0`,
          `db_client_connection_max${conns("fresh")} 4`,
          `db_client_connection_limit${conns("fresh")} 4`,
          `db_client_connection_idle_max${conns("fresh")} 4`,
          `db_client_connection_idle_min${conns("fresh")} 0`,
          `db_client_connection_timeouts_total${of("fresh", "{timeout}")} 0`,
          `db_client_connection_create_time_count${secs("fresh")} 0`,
          `db_client_connection_wait_time_count${secs("fresh")} 0`,
          `db_client_connection_use_time_count${secs("fresh")} 0`,
          `connection_pool_breaker_open${of("fresh", undefined)} 0`
        ])
        for (const [name, , unit] of convention) {
          const prometheus = name.replaceAll(".", "_") + (name.endsWith("timeouts") ? "_total" : "")
          assert.include(text, `# UNIT ${prometheus} ${unit}\n`)
        }
        assert.include(text, "# TYPE db_client_connection_count gauge") // how Prometheus shows an UpDownCounter
        assert.include(text, "# TYPE db_client_connection_timeouts_total counter")
        assert.include(text, "# TYPE db_client_connection_wait_time histogram")
        // the instrument kinds as OpenTelemetry has them, before the Prometheus rendering folds them
        const collected = yield* otel.collect
        const metrics = collected.scopeMetrics.flatMap((s) => s.metrics)
        for (const [name, type, unit] of convention) {
          const metric = metrics.find((m) => m.descriptor.name === name)
          if (metric === undefined) throw new Error(`no ${name} collected`)
          // what an exporter (OTLP too) sees: an UpDownCounter is a non-monotonic sum, a Counter a monotonic one
          const kind = metric.dataPointType === DataPointType.HISTOGRAM
            ? "HISTOGRAM"
            : metric.dataPointType === DataPointType.SUM
            ? metric.isMonotonic ? "COUNTER" : "UP_DOWN_COUNTER"
            : "GAUGE"
          assert.deepStrictEqual([kind, metric.descriptor.unit], [type, unit], name)
        }
        // a finite bucket for every wait up to the default acquireTimeout (30 s), and beyond
        const bounds = `db_client_connection_wait_time_bucket${secs("fresh", "50")}`
        assert.strictEqual(value(text, bounds), 0)
      })
    ))

  it.scoped("db.client.connection.* follow the pool: counts by state, pending requests, limits, timeouts", () =>
    withTelemetry((otel) =>
      Effect.gen(function*() {
        const pool = yield* ConnectionPool.make({
          name: "orders",
          driver: makeDriver({ connectDelay: "10 millis" }).driver,
          minSize: 1,
          maxSize: 3,
          acquireTimeout: "1 second",
          shutdownTimeout: 0 // a failed assertion leaves connections held: close them at once
        })
        yield* adjust("10 millis") // minSize: one connection opened in the background
        const a = yield* hold(pool)
        yield* Deferred.await(a.got) // the idle one, at once
        const b = yield* hold(pool)
        const c = yield* hold(pool)
        yield* adjust("10 millis") // b and c each wait for a connect of their own
        yield* Deferred.await(b.got)
        yield* Deferred.await(c.got)
        yield* adjust("500 millis")
        yield* c.release
        yield* Fiber.join(c.fiber)

        // two held, one idle
        let text = yield* otel.scrape
        assert.includeMembers(about(text, "orders"), [
          `db_client_connection_count${conns("orders", used)} 2`,
          `db_client_connection_count${conns("orders", idle)} 1`,
          `db_client_connection_pending_requests${of("orders", "{request}")} 0`,
          `db_client_connection_max${conns("orders")} 3`,
          `db_client_connection_idle_max${conns("orders")} 3`,
          `db_client_connection_idle_min${conns("orders")} 1`,
          // three connects of 10 ms each
          `db_client_connection_create_time_count${secs("orders")} 3`,
          `db_client_connection_create_time_bucket${secs("orders", "0.005")} 0`,
          `db_client_connection_create_time_bucket${secs("orders", "0.01")} 3`,
          // a got the idle one at once; b and c waited 10 ms for their connects
          `db_client_connection_wait_time_count${secs("orders")} 3`,
          `db_client_connection_wait_time_bucket${secs("orders", "0.0001")} 1`,
          `db_client_connection_wait_time_bucket${secs("orders", "0.005")} 1`,
          `db_client_connection_wait_time_bucket${secs("orders", "0.01")} 3`,
          // c was held 500 ms
          `db_client_connection_use_time_count${secs("orders")} 1`,
          `db_client_connection_use_time_sum${secs("orders")} 0.5`,
          `db_client_connection_use_time_bucket${secs("orders", "0.2")} 0`,
          `db_client_connection_use_time_bucket${secs("orders", "0.5")} 1`
        ])
        assert.include(text, "# TYPE db_client_connection_create_time histogram")
        assert.closeTo(value(text, `db_client_connection_create_time_sum${secs("orders")}`), 0.03, 1e-9)
        assert.closeTo(value(text, `db_client_connection_wait_time_sum${secs("orders")}`), 0.02, 1e-9)

        // all three held, a fourth caller waits
        const d = yield* hold(pool)
        yield* Deferred.await(d.got)
        const e = yield* hold(pool)
        yield* settle
        text = yield* otel.scrape
        assert.includeMembers(about(text, "orders"), [
          `db_client_connection_count${conns("orders", used)} 3`,
          `db_client_connection_count${conns("orders", idle)} 0`,
          `db_client_connection_pending_requests${of("orders", "{request}")} 1`
        ])

        // its acquireTimeout runs out
        yield* adjust("1 second")
        const timedOut = yield* Effect.flip(Fiber.join(e.fiber))
        assert.strictEqual(timedOut._tag, "PoolTimeout")
        text = yield* otel.scrape
        assert.includeMembers(about(text, "orders"), [
          `db_client_connection_timeouts_total${of("orders", "{timeout}")} 1`,
          `db_client_connection_pending_requests${of("orders", "{request}")} 0`,
          `db_client_connection_wait_time_count${secs("orders")} 4` // a timed-out wait is not a wait_time
        ])

        // everything back; then a resize moves the limits
        yield* Effect.forEach([a, b, d], (held) => Effect.zipRight(held.release, Fiber.join(held.fiber)))
        yield* pool.resize({ minSize: 2, maxSize: 5 })
        text = yield* otel.scrape
        assert.includeMembers(about(text, "orders"), [
          `db_client_connection_count${conns("orders", used)} 0`,
          `db_client_connection_count${conns("orders", idle)} 3`,
          `db_client_connection_use_time_count${secs("orders")} 4`,
          `db_client_connection_max${conns("orders")} 5`,
          `db_client_connection_limit${conns("orders")} 5`,
          `db_client_connection_idle_max${conns("orders")} 5`,
          `db_client_connection_idle_min${conns("orders")} 2`
        ])
      })
    ))

  it.scoped("two pools of one name add up, and a closed pool counts for nothing", () =>
    withTelemetry((otel) =>
      Effect.gen(function*() {
        const open = (maxSize: number) =>
          Effect.gen(function*() {
            const scope = yield* Scope.make()
            const make = ConnectionPool.make({ name: "shard", driver: makeDriver().driver, maxSize })
            const pool = yield* Scope.extend(make, scope)
            yield* pool.withConnection(() => Effect.void)
            return scope
          })
        const first = yield* open(2)
        const second = yield* open(3)
        let text = yield* otel.scrape
        assert.includeMembers(about(text, "shard"), [
          `db_client_connection_count${conns("shard", idle)} 2`,
          `db_client_connection_max${conns("shard")} 5`
        ])
        yield* Scope.close(first, Exit.void)
        text = yield* otel.scrape
        assert.includeMembers(about(text, "shard"), [
          `db_client_connection_count${conns("shard", idle)} 1`,
          `db_client_connection_max${conns("shard")} 3`
        ])
        yield* Scope.close(second, Exit.void)
        text = yield* otel.scrape
        assert.includeMembers(about(text, "shard"), [
          `db_client_connection_count${conns("shard", used)} 0`,
          `db_client_connection_count${conns("shard", idle)} 0`,
          `db_client_connection_max${conns("shard")} 0`,
          `db_client_connection_idle_min${conns("shard")} 0`
        ])
      })
    ))

  it.scoped("the breaker (an extension, in the project's namespace) is 1 while connects fail, 0 after", () =>
    withTelemetry((otel) =>
      Effect.gen(function*() {
        const t = makeDriver({ down: true })
        yield* Effect.scoped(Effect.gen(function*() {
          const pool = yield* ConnectionPool.make({
            name: "flaky",
            driver: t.driver,
            breakerThreshold: 2,
            breakerBackoff: "1 second"
          })
          yield* Effect.flip(pool.withConnection(() => Effect.void))
          yield* Effect.flip(pool.withConnection(() => Effect.void))
          assert.isTrue((yield* pool.stats).breakerOpen)
          assert.include(yield* otel.scrape, `connection_pool_breaker_open${of("flaky", undefined)} 1`)
          t.setDown(false)
          yield* adjust("2 seconds") // the next probe connects
          yield* eventually(pool.stats, (s) => !s.breakerOpen)
          const text = yield* otel.scrape
          assert.includeMembers(about(text, "flaky"), [
            `connection_pool_breaker_open${of("flaky", undefined)} 0`,
            `db_client_connection_count${conns("flaky", idle)} 1` // the probe's connection
          ])
        }))
        const text = yield* otel.scrape
        assert.includeMembers(about(text, "flaky"), [
          `db_client_connection_count${conns("flaky", used)} 0`,
          `db_client_connection_count${conns("flaky", idle)} 0`
        ])
      })
    ))
})

const acquires = (spans: ReadonlyArray<ReadableSpan>) => spans.filter((s) => s.name === "ConnectionPool.acquire")
const named = (spans: ReadonlyArray<ReadableSpan>, name: string) => {
  const span = spans.find((s) => s.name === name)
  if (span === undefined) throw new Error(`no span ${name}`)
  return span
}

/** The acquire span is the caller's child, of kind client, named for its pool. */
const assertChildOf = (acquire: ReadableSpan, parent: ReadableSpan, pool: string) => {
  assert.strictEqual(acquire.parentSpanContext?.spanId, parent.spanContext().spanId)
  assert.strictEqual(acquire.spanContext().traceId, parent.spanContext().traceId)
  assert.strictEqual(acquire.kind, SpanKind.CLIENT)
  assert.deepStrictEqual(acquire.attributes, { "db.client.connection.pool.name": pool })
}

/** One connection (so a second caller waits), closed at once when the test ends, even if a holder is stuck. */
const single = (name: string) =>
  ConnectionPool.make({ name, driver: makeDriver().driver, maxSize: 1, shutdownTimeout: 0 })

describe("Telemetry: the pool's spans through @effect/opentelemetry into an InMemorySpanExporter", () => {
  it.scoped("a borrow that waits, under the caller's span, is its child ConnectionPool.acquire span, kind client", () =>
    withTelemetry((otel) =>
      Effect.gen(function*() {
        const pool = yield* single("traced")
        const holder = yield* hold(pool) // opens a connection, but with no span to join: not traced
        yield* Deferred.await(holder.got)
        assert.deepStrictEqual(otel.spans(), [])
        const caller = yield* Effect.fork(Effect.withSpan(Effect.scoped(pool.get), "checkout"))
        yield* settle
        yield* adjust("250 millis")
        yield* holder.release
        yield* Fiber.join(caller)
        const spans = otel.spans()
        assert.deepStrictEqual(spans.map((s) => s.name), ["ConnectionPool.acquire", "checkout"])
        const [acquire] = acquires(spans)
        assertChildOf(acquire, named(spans, "checkout"), "traced")
        assert.deepStrictEqual(acquire.duration, [0, 250_000_000]) // the wait, on the TestClock
        assert.strictEqual(acquire.status.code, SpanStatusCode.OK)
      })
    ))

  it.scoped("a borrow that opens a connection is traced; one served at once from idle is not", () =>
    withTelemetry((otel) =>
      Effect.gen(function*() {
        const pool = yield* ConnectionPool.make({ name: "warm", driver: makeDriver().driver })
        yield* Effect.withSpan(Effect.scoped(pool.get), "first")
        yield* Effect.withSpan(Effect.scoped(pool.get), "second")
        const spans = otel.spans()
        assert.deepStrictEqual(spans.map((s) => s.name), ["ConnectionPool.acquire", "first", "second"])
        assertChildOf(acquires(spans)[0], named(spans, "first"), "warm")
      })
    ))

  it.scoped("a wait with no parent span makes no span at all", () =>
    withTelemetry((otel) =>
      Effect.gen(function*() {
        const pool = yield* single("untraced")
        const holder = yield* hold(pool)
        yield* Deferred.await(holder.got)
        const caller = yield* Effect.fork(Effect.scoped(pool.get))
        yield* settle
        assert.strictEqual((yield* pool.stats).waiting, 1)
        yield* holder.release
        yield* Fiber.join(caller)
        assert.deepStrictEqual(otel.spans(), [])
      })
    ))

  it.scoped("a wait that times out ends its span with the PoolTimeout as an error", () =>
    withTelemetry((otel) =>
      Effect.gen(function*() {
        const pool = yield* ConnectionPool.make({
          name: "slow",
          driver: makeDriver().driver,
          maxSize: 1,
          acquireTimeout: "1 second",
          shutdownTimeout: 0
        })
        const holder = yield* hold(pool)
        yield* Deferred.await(holder.got)
        const caller = yield* Effect.fork(Effect.withSpan(Effect.scoped(pool.get), "checkout"))
        yield* adjust("1 second")
        assert.isTrue(Exit.isFailure(yield* Fiber.await(caller)))
        const spans = otel.spans()
        const [acquire] = acquires(spans)
        assertChildOf(acquire, named(spans, "checkout"), "slow")
        assert.strictEqual(acquire.status.code, SpanStatusCode.ERROR)
        assert.match(acquire.status.message ?? "", /^pool "slow" timed out after 1s waiting/)
        yield* holder.release
      })
    ))

  it.scoped("a tryGet whose connect outlasts acquireTimeout ends its span at the deadline, connecting", () =>
    withTelemetry((otel) =>
      Effect.gen(function*() {
        const pool = yield* ConnectionPool.make({
          name: "opening",
          driver: makeDriver({ connectDelay: "10 seconds" }).driver,
          acquireTimeout: "1 second",
          connectTimeout: "1 minute"
        })
        const caller = yield* Effect.fork(Effect.withSpan(Effect.scoped(pool.tryGet), "checkout"))
        yield* adjust("1 second")
        assert.isTrue(Exit.isFailure(yield* Fiber.await(caller)))
        const spans = otel.spans()
        const [acquire] = acquires(spans)
        assertChildOf(acquire, named(spans, "checkout"), "opening")
        assert.deepStrictEqual(acquire.duration, [1, 0])
        assert.strictEqual(acquire.status.code, SpanStatusCode.ERROR)
        const message = acquire.status.message ?? ""
        assert.match(message, /timed out after 1s waiting for a new connection to open .*connecting 1s/)
        yield* adjust("9 seconds") // its connect, kept by the pool
        assert.strictEqual((yield* pool.stats).idle, 1)
      })
    ))

  it.scoped("withConnectionCallback: a caller that waits is traced the same way", () =>
    withTelemetry((otel) =>
      Effect.gen(function*() {
        const pool = yield* single("callbacks")
        const holder = yield* hold(pool)
        yield* Deferred.await(holder.got)
        const caller = yield* Effect.fork(Effect.withSpan(
          pool.withConnectionCallback<number, never>((conn, done) => done(Exit.succeed(conn.id))),
          "query"
        ))
        yield* settle
        yield* adjust("100 millis")
        yield* holder.release
        assert.strictEqual(yield* Fiber.join(caller), 1)
        const spans = otel.spans()
        assert.deepStrictEqual(spans.map((s) => s.name), ["ConnectionPool.acquire", "query"])
        const [acquire] = acquires(spans)
        assertChildOf(acquire, named(spans, "query"), "callbacks")
        assert.deepStrictEqual(acquire.duration, [0, 100_000_000])
      })
    ))
})
