import { PgPool } from "@connection-pool/pg"
import { SqlClient } from "@effect/sql"
import { Config, Effect } from "effect"

// DATABASE_URL, DB_POOL_MAX from the environment; the password stays Redacted until pg gets it
const DbLive = PgPool.layerConfig({ url: Config.redacted("DATABASE_URL"), maxSize: Config.integer("DB_POOL_MAX") })

export const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const users = yield* sql`SELECT id, name FROM users WHERE active = ${true}`
  yield* sql.withTransaction(sql`UPDATE counters SET n = n + 1`)
  const raw = yield* PgPool.withConnection((client) => PgPool.query(client, "SELECT pg_backend_pid()"))
  return { users, pid: raw.rows[0] }
}).pipe(Effect.provide(DbLive))
