import { assert, describe, it } from "@effect/vitest"
import { SpanKind } from "@opentelemetry/api"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { checkouts, DbLive, TelemetryLive } from "../examples/telemetry.js"
import { prometheus, scrape } from "./otel.js"

const root = path.resolve(__dirname, "../../..")

describe("README: Telemetry", () => {
  it("its Telemetry example is examples/telemetry.ts, verbatim (so tsc -b type-checks it)", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
    const section = readme.slice(readme.indexOf("### Telemetry"))
    const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
    assert.strictEqual(block, fs.readFileSync(path.join(root, "packages/core/examples/telemetry.ts"), "utf8"))
  })

  it.live("the example's metrics reach a Prometheus scrape, and its waits are spans under their checkouts", () =>
    Effect.gen(function*() {
      const { exporter, port } = yield* prometheus
      const memory = new InMemorySpanExporter()
      const [ids, text, spans] = yield* Effect.gen(function*() {
        const ids = yield* Effect.provide(checkouts, DbLive)
        return [ids, yield* scrape(port), memory.getFinishedSpans()] as const // before the SDK shuts down
      }).pipe(Effect.provide(TelemetryLive(exporter, new SimpleSpanProcessor(memory))))

      assert.strictEqual(new Set(ids).size, 2) // a pool of two
      const pool = `db_client_connection_pool_name="orders"`
      const scope = `otel_scope_name="@effect/opentelemetry/Metrics"`
      const conns = `${pool},unit="{connection}"`
      const secs = `${pool},unit="s"`
      for (
        const line of [
          `db_client_connection_create_time_count{${secs},${scope}} 2`,
          `db_client_connection_wait_time_count{${secs},${scope}} 3`,
          `db_client_connection_use_time_count{${secs},${scope}} 3`,
          // the layer closed the pool: no connections, and none allowed
          `db_client_connection_count{${conns},db_client_connection_state="used",${scope}} 0`,
          `db_client_connection_count{${conns},db_client_connection_state="idle",${scope}} 0`,
          `db_client_connection_max{${conns},${scope}} 0`
        ]
      ) assert.include(text.split("\n"), line)

      const parents = spans.filter((s) => s.name === "checkout")
      const acquires = spans.filter((s) => s.name === "ConnectionPool.acquire")
      assert.deepStrictEqual(parents.map((s) => s.attributes.order).sort(), [1, 2, 3])
      assert.strictEqual(acquires.length, 3)
      assert.deepStrictEqual(
        new Set(acquires.map((s) => s.parentSpanContext?.spanId)),
        new Set(parents.map((s) => s.spanContext().spanId))
      )
      for (const acquire of acquires) {
        assert.strictEqual(acquire.kind, SpanKind.CLIENT)
        assert.strictEqual(acquire.attributes["db.client.connection.pool.name"], "orders")
      }
    }))
})
