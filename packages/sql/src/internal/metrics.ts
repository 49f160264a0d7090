import * as Metric from "effect/Metric"

// Named like OpenTelemetry's db.client.* conventions; tagged with the router, the server and its role.
/** @internal */
export const attributes = {
  router: "db.client.router.name",
  server: "server.address",
  role: "db.client.router.role",
  route: "db.client.router.route"
} as const

/** @internal */
export const statements = Metric.counter("db.client.router.statements", {
  description: "Statements routed, by server and route (read or write)",
  incremental: true
})

/** @internal */
export const fallbacks = Metric.counter("db.client.router.fallbacks", {
  description: "Reads sent to the primary because no replica could serve them",
  incremental: true
})

/** @internal */
export const lag = Metric.gauge("db.client.router.replica.lag", {
  description: "How long the replica has been behind the primary, in seconds"
})
