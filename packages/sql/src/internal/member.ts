import type * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Stream from "effect/Stream"
import type * as SqlRouter from "../SqlRouter.js"
import * as metrics from "./metrics.js"

/** A connection that reserves one of `client`'s connections for each statement: works with any SqlClient. */
const reserving = (client: SqlClient.SqlClient): Connection => ({
  execute: (sql, params, transformRows) =>
    Effect.scoped(Effect.flatMap(client.reserve, (c) => c.execute(sql, params, transformRows))),
  executeRaw: (sql, params) => Effect.scoped(Effect.flatMap(client.reserve, (c) => c.executeRaw(sql, params))),
  executeValues: (sql, params) => Effect.scoped(Effect.flatMap(client.reserve, (c) => c.executeValues(sql, params))),
  executeUnprepared: (sql, params, transformRows) =>
    Effect.scoped(Effect.flatMap(client.reserve, (c) => c.executeUnprepared(sql, params, transformRows))),
  executeStream: (sql, params, transformRows) =>
    Stream.unwrapScoped(Effect.map(client.reserve, (c) => c.executeStream(sql, params, transformRows)))
})

/** Bumped by every status change, so the router recomputes its list of usable replicas only then. @internal */
export const statuses = { version: 0 }

/**
 * One server as the router sees it. Its status and lag are written by its lag fiber (and by a read that could not
 * reach it), read by every routing decision: plain fields, one writer each, no transaction needed.
 * @internal
 */
export class Member {
  readonly connection: Connection
  private _status: SqlRouter.ReplicaStatus = "up"
  reason: string | undefined = undefined
  lagMillis = 0
  lagBytes = 0
  /** The last replay position seen (replicas). */
  position: bigint | undefined = undefined
  reads = 0
  writes = 0
  inFlight = 0
  readonly readCounter: Metric.Metric.Counter<number>
  readonly writeCounter: Metric.Metric.Counter<number>
  readonly lagGauge: Metric.Metric.Gauge<number>

  constructor(
    readonly index: number,
    readonly role: "primary" | "replica",
    readonly server: SqlRouter.Server,
    router: string
  ) {
    this.connection = server.connection ?? reserving(server.client)
    const tagged = <M extends Metric.Metric<any, any, any>>(m: M): M =>
      m.pipe(
        Metric.tagged(metrics.attributes.router, router),
        Metric.tagged(metrics.attributes.server, server.name),
        Metric.tagged(metrics.attributes.role, role)
      ) as M
    this.readCounter = tagged(Metric.tagged(metrics.statements, metrics.attributes.route, "read"))
    this.writeCounter = tagged(Metric.tagged(metrics.statements, metrics.attributes.route, "write"))
    this.lagGauge = tagged(metrics.lag)
  }

  get status(): SqlRouter.ReplicaStatus {
    return this._status
  }

  set status(status: SqlRouter.ReplicaStatus) {
    if (status !== this._status) statuses.version++
    this._status = status
  }

  private flushed = { reads: 0, writes: 0 }

  /** The reads and writes counted since the last flush, into the metrics. */
  get flushMetrics(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const reads = this.reads - this.flushed.reads
      const writes = this.writes - this.flushed.writes
      this.flushed = { reads: this.reads, writes: this.writes }
      return Effect.zipRight(
        reads > 0 ? Metric.incrementBy(this.readCounter, reads) : Effect.void,
        writes > 0 ? Metric.incrementBy(this.writeCounter, writes) : Effect.void
      )
    })
  }

  get name(): string {
    return this.server.name
  }

  get client(): SqlClient.SqlClient {
    return this.server.client
  }

  stats(): SqlRouter.ServerStats {
    return {
      name: this.name,
      role: this.role,
      status: this.status,
      reason: this.reason,
      lagMillis: this.lagMillis,
      lagBytes: this.lagBytes,
      reads: this.reads,
      writes: this.writes,
      inFlight: this.inFlight
    }
  }
}
