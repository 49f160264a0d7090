import type * as ConnectionPool from "@connection-pool/core/ConnectionPool"
import type * as SqlRouter from "@connection-pool/sql/SqlRouter"
import type { SqlError } from "@effect/sql/SqlError"
import type { Connection } from "@effect/sql/SqlConnection"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type pg from "pg"
import type { PgPoolConfig } from "../PgPool.js"
import { PooledConnection } from "./client.js"

/** "16/B374D848" → its 64-bit position. @internal */
export const parseLsn = (lsn: string): bigint => {
  const [hi, lo] = lsn.split("/")
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`)
}

const codeOf = (e: SqlError): unknown => (e.cause as { code?: unknown } | undefined)?.code

const messageOf = (e: SqlError): string => {
  const m = (e.cause as { message?: unknown } | undefined)?.message
  return typeof m === "string" ? m : ""
}

/** @internal */
export const postgres: SqlRouter.Replication = {
  primaryPosition: (sql) =>
    Effect.map(
      sql.withoutTransforms()<{ lsn: string }>`SELECT pg_current_wal_insert_lsn()::text AS lsn`,
      (rows) => parseLsn(rows[0]!.lsn)
    ),
  replicaPosition: (sql) =>
    Effect.map(
      sql.withoutTransforms()<{ r: boolean; lsn: string | null }>`
        SELECT pg_is_in_recovery() AS r, pg_last_wal_replay_lsn()::text AS lsn`,
      (rows) => ({ inRecovery: rows[0]!.r, position: rows[0]!.lsn === null ? undefined : parseLsn(rows[0]!.lsn) })
    ),
  // 25006: read_only_sql_transaction (a standby, or default_transaction_read_only)
  isReadOnlyViolation: (e) => codeOf(e) === "25006",
  // a client whose socket already died refuses the query before sending anything
  isRetryable: (e) => /is not queryable/.test(messageOf(e))
}

/** The connection the router uses per statement: borrows through the pool's callback fast path. @internal */
export const connection = (pool: ConnectionPool.ConnectionPool<pg.Client>): Connection =>
  new PooledConnection(pool, undefined)

const READ_ONLY = "-c default_transaction_read_only=on"

/** The server's options with sessions that refuse writes (through libpq's `options` startup parameter). @internal */
export const readOnly = <C extends PgPoolConfig>(config: C): C => {
  const base = config.url !== undefined
    ? new URL(Redacted.value(config.url))
    : new URL(
      `postgres://${encodeURIComponent(config.username ?? "postgres")}@${config.host ?? "localhost"}:${
        config.port ?? 5432
      }/${encodeURIComponent(config.database ?? config.username ?? "postgres")}`
    )
  const options = base.searchParams.get("options")
  base.searchParams.set("options", options === null ? READ_ONLY : `${options} ${READ_ONLY}`)
  return { ...config, url: Redacted.make(base.toString()) }
}
