import { PgRouter } from "@connection-pool/pg"
import { SqlRouter } from "@connection-pool/sql"
import { SqlClient } from "@effect/sql"
import { Config, Effect } from "effect"

// PRIMARY_URL and REPLICA_URLS (comma-separated) from the environment, each Redacted until pg gets it
const DbLive = PgRouter.layerConfig({
  primary: { url: Config.redacted("PRIMARY_URL") },
  replicas: Config.map(Config.array(Config.redacted(Config.string()), "REPLICA_URLS"), (urls) =>
    urls.map((url) => ({ url }))),
  maxSize: Config.succeed(10), // per server
  maxLag: Config.succeed("1 second"), // replicas further behind are skipped until back under rejoinLag
  selection: Config.succeed("least-connections" as const)
})

export const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient // the primary, unless inside withRead
  yield* sql`INSERT INTO orders (item) VALUES (${"book"})`
  // on a replica that has replayed the insert above (read-your-writes), else on the primary
  const orders = yield* SqlRouter.withRead(sql`SELECT id, item FROM orders`)
  // a transaction runs on the primary, every statement of it, even inside withRead
  yield* SqlRouter.withRead(sql.withTransaction(sql`UPDATE stock SET n = n - 1 WHERE item = ${"book"}`))
  const router = yield* SqlRouter.SqlRouter
  return { orders, stats: yield* router.stats }
}).pipe(
  // with fallback: "fail", reads no replica can serve fail with ReplicasUnavailable instead of using the primary
  Effect.catchTag("ReplicasUnavailable", (e) => Effect.fail(new Error(e.message))),
  Effect.provide(DbLive)
)
