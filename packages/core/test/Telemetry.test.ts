import { assert, describe, it } from "@effect/vitest"
import { SpanKind, SpanStatusCode } from "@opentelemetry/api"
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { Deferred, Effect, Exit, Fiber } from "effect"
import { ConnectionPool } from "../src/index.js"
import { withTelemetry } from "./otel.js"
import { adjust, eventually, hold, makeDriver, settle } from "./utils.js"

// What Prometheus reads: OTel's dots become underscores (in names and attribute keys), a monotonic sum gets
// `_total`, a histogram `_bucket` (cumulative, `le` upper bounds), `_sum` and `_count`; every sample carries the
// instrumentation scope. No unit suffix is added.
const scope = `otel_scope_name="@effect/opentelemetry/Metrics"`
const of = (pool: string, labels = "", le?: string) =>
  `{db_client_connection_pool_name="${pool}"${labels},${scope}${le === undefined ? "" : `,le="${le}"`}}`
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

describe("Telemetry: the pool's metrics through OpenTelemetry's Prometheus exporter, scraped over HTTP", () => {
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
        assert.include(text, "# TYPE db_client_connection_count gauge")
        assert.includeMembers(about(text, "orders"), [
          `db_client_connection_count${of("orders", used)} 2`,
          `db_client_connection_count${of("orders", idle)} 1`,
          `db_client_connection_pending_requests${of("orders")} 0`,
          `db_client_connection_max${of("orders")} 3`,
          `db_client_connection_idle_min${of("orders")} 1`,
          // three connects of 10 ms each
          `db_client_connection_create_time_count${of("orders")} 3`,
          `db_client_connection_create_time_bucket${of("orders", "", "0.0064")} 0`,
          `db_client_connection_create_time_bucket${of("orders", "", "0.0128")} 3`,
          // a got the idle one at once; b and c waited 10 ms for their connects
          `db_client_connection_wait_time_count${of("orders")} 3`,
          `db_client_connection_wait_time_bucket${of("orders", "", "0.0001")} 1`,
          `db_client_connection_wait_time_bucket${of("orders", "", "0.0128")} 3`,
          // c was held 500 ms
          `db_client_connection_use_time_count${of("orders")} 1`,
          `db_client_connection_use_time_sum${of("orders")} 0.5`,
          `db_client_connection_use_time_bucket${of("orders", "", "0.4096")} 0`,
          `db_client_connection_use_time_bucket${of("orders", "", "0.8192")} 1`
        ])
        assert.include(text, "# TYPE db_client_connection_create_time histogram")
        assert.closeTo(value(text, `db_client_connection_create_time_sum${of("orders")}`), 0.03, 1e-9)
        assert.closeTo(value(text, `db_client_connection_wait_time_sum${of("orders")}`), 0.02, 1e-9)

        // all three held, a fourth caller waits
        const d = yield* hold(pool)
        yield* Deferred.await(d.got)
        const e = yield* hold(pool)
        yield* settle
        text = yield* otel.scrape
        assert.includeMembers(about(text, "orders"), [
          `db_client_connection_count${of("orders", used)} 3`,
          `db_client_connection_count${of("orders", idle)} 0`,
          `db_client_connection_pending_requests${of("orders")} 1`
        ])

        // its acquireTimeout runs out
        yield* adjust("1 second")
        const timedOut = yield* Effect.flip(Fiber.join(e.fiber))
        assert.strictEqual(timedOut._tag, "PoolTimeout")
        text = yield* otel.scrape
        assert.include(text, "# TYPE db_client_connection_timeouts_total counter")
        assert.includeMembers(about(text, "orders"), [
          `db_client_connection_timeouts_total${of("orders")} 1`,
          `db_client_connection_pending_requests${of("orders")} 0`,
          `db_client_connection_wait_time_count${of("orders")} 4` // a timed-out wait is not a wait_time
        ])

        // everything back
        yield* Effect.forEach([a, b, d], (held) => Effect.zipRight(held.release, Fiber.join(held.fiber)))
        text = yield* otel.scrape
        assert.includeMembers(about(text, "orders"), [
          `db_client_connection_count${of("orders", used)} 0`,
          `db_client_connection_count${of("orders", idle)} 3`,
          `db_client_connection_use_time_count${of("orders")} 4`
        ])
      })
    ))

  it.scoped("a closed pool reads no connections; the breaker gauge is 1 while connects fail, 0 once one succeeds", () =>
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
          assert.include(yield* otel.scrape, `db_client_connection_breaker_open${of("flaky")} 1`)
          t.setDown(false)
          yield* adjust("2 seconds") // the next probe connects
          yield* eventually(pool.stats, (s) => !s.breakerOpen)
          const text = yield* otel.scrape
          assert.includeMembers(about(text, "flaky"), [
            `db_client_connection_breaker_open${of("flaky")} 0`,
            `db_client_connection_count${of("flaky", idle)} 1` // the probe's connection
          ])
        }))
        const text = yield* otel.scrape
        assert.includeMembers(about(text, "flaky"), [
          `db_client_connection_count${of("flaky", used)} 0`,
          `db_client_connection_count${of("flaky", idle)} 0`
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
