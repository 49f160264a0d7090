/**
 * What the command runs against: `postgres://…` (through `@connection-pool/pg`'s `PgPool`), `sqlite:FILE`
 * (through `@connection-pool/sqlite`), or nothing, an embedded SQLite database made and seeded in a temp dir.
 * A target's password never appears in what it prints: {@link display} masks it.
 *
 * @since 0.1.0
 */
import type * as ConnectionPool from "@connection-pool/core/ConnectionPool"
import type { ConnectionError, InvalidConfig, PoolError } from "@connection-pool/core/PoolError"
import { PgPool } from "@connection-pool/pg"
import { SqlitePool } from "@connection-pool/sqlite"
import * as Reactivity from "@effect/experimental/Reactivity"
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/**
 * @since 0.1.0
 * @category models
 */
export type Target =
  | { readonly _tag: "Postgres"; readonly url: Redacted.Redacted<string> }
  | { readonly _tag: "Sqlite"; readonly filename: string }
  | { readonly _tag: "Embedded" }

/**
 * TARGET is neither `postgres://…`, `postgresql://…` nor `sqlite:FILE`.
 *
 * @since 0.1.0
 * @category errors
 */
export class BadTarget extends Data.TaggedError("BadTarget")<{ readonly shown: string; readonly reason: string }> {
  override get message(): string {
    return this.reason === "unknown option"
      ? `unknown option ${this.shown}`
      : `bad TARGET ${this.shown}: ${this.reason}`
  }
}

/**
 * `postgres://user:secret@host/db` → `postgres://user:***@host/db`; anything else as it is.
 *
 * @since 0.1.0
 * @category formatting
 */
export const mask = (text: string): string => text.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@?#]*):[^@/?#]*@/i, "$1:***@")

/**
 * @since 0.1.0
 * @category parsing
 */
export const parse = (input: Option.Option<string>): Effect.Effect<Target, BadTarget> => {
  if (Option.isNone(input)) return Effect.succeed({ _tag: "Embedded" })
  const text = input.value
  if (text.startsWith("-")) return Effect.fail(new BadTarget({ shown: text, reason: "unknown option" }))
  if (/^postgres(ql)?:\/\//i.test(text)) {
    try {
      new URL(text)
    } catch {
      return Effect.fail(new BadTarget({ shown: mask(text), reason: "not a valid URL" }))
    }
    return Effect.succeed({ _tag: "Postgres", url: Redacted.make(text) })
  }
  if (text.startsWith("sqlite:")) {
    const filename = text.slice("sqlite:".length).replace(/^\/\/(?=\/)/, "")
    if (filename === "") return Effect.fail(new BadTarget({ shown: text, reason: "sqlite: needs a file name" }))
    return Effect.succeed({ _tag: "Sqlite", filename })
  }
  return Effect.fail(
    new BadTarget({ shown: mask(text), reason: "expected postgres://…, postgresql://…, sqlite:FILE, or nothing" })
  )
}

/**
 * How the target is shown: a URL with its password masked, the SQLite file, or "embedded SQLite (FILE)".
 *
 * @since 0.1.0
 * @category formatting
 */
export const display = (target: Target, embeddedFile?: string): string => {
  switch (target._tag) {
    case "Postgres":
      return mask(Redacted.value(target.url))
    case "Sqlite":
      return `sqlite:${target.filename}`
    case "Embedded":
      return `embedded SQLite${embeddedFile === undefined ? "" : ` (${embeddedFile})`}`
  }
}

/**
 * An open target: its `SqlClient`, its pools (for SQLite: the readers and the writer), and what the built-in
 * workloads need to know about it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Session {
  readonly target: Target
  readonly shown: string
  readonly kind: "postgres" | "sqlite"
  readonly sql: SqlClient.SqlClient
  readonly pools: ReadonlyArray<ConnectionPool.ConnectionPool<unknown>>
  /** Milliseconds from asking to open the target to its first connection being ready. */
  readonly connectMs: number
}

/**
 * @since 0.1.0
 * @category errors
 */
export type OpenError = InvalidConfig | ConnectionError | PoolError | SqlError

/** Rows of the built-in workloads' table. */
export const TABLE = "connection_pool_load"
export const ROWS = 10_000

const embeddedDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "connection-pool-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/**
 * Opens `target` with the pool options `config`, in the current scope; the embedded database is made in a temp
 * dir removed when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const open = (
  target: Target,
  config: ConnectionPool.PoolConfig,
  sqliteOptions: Partial<SqlitePool.SqlitePoolConfig> = {}
): Effect.Effect<Session, OpenError, Scope.Scope> =>
  Effect.gen(function*() {
    const started = performance.now()
    switch (target._tag) {
      case "Postgres": {
        const { client, pool } = yield* Effect.provide(
          PgPool.make({ url: target.url, name: "postgres", ...config, applicationName: "connection-pool" }),
          Reactivity.layer
        )
        return {
          target,
          shown: display(target),
          kind: "postgres",
          sql: client,
          pools: [pool as ConnectionPool.ConnectionPool<unknown>],
          connectMs: performance.now() - started
        }
      }
      case "Sqlite":
      case "Embedded": {
        const filename = target._tag === "Sqlite" ? target.filename : path.join(yield* embeddedDir, "embedded.db")
        const { client, readers, writer } = yield* Effect.provide(
          SqlitePool.make({ filename, name: "sqlite", ...config, ...sqliteOptions }),
          Reactivity.layer
        )
        return {
          target,
          shown: display(target, filename),
          kind: "sqlite",
          sql: client,
          pools: [readers, writer] as ReadonlyArray<ConnectionPool.ConnectionPool<unknown>>,
          connectMs: performance.now() - started
        }
      }
    }
  })

/**
 * Creates the built-in workloads' table (`connection_pool_load`: id, name, n) with `ROWS` rows if it is missing,
 * and drops it again when the scope closes if it was not there before (the embedded database is removed anyway).
 *
 * @since 0.1.0
 * @category workloads
 */
export const seed = (session: Session): Effect.Effect<void, SqlError, Scope.Scope> => {
  const sql = session.sql
  return Effect.gen(function*() {
    const exists = yield* Effect.map(
      session.kind === "postgres"
        ? sql<{ t: string | null }>`SELECT to_regclass(${TABLE}) AS t`
        : sql<{ t: string | null }>`SELECT name AS t FROM sqlite_master WHERE type = 'table' AND name = ${TABLE}`,
      (rows) => rows.length > 0 && rows[0].t !== null
    )
    if (!exists) {
      yield* sql`CREATE TABLE IF NOT EXISTS ${sql(TABLE)}
        (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER NOT NULL)`
      if (session.target._tag !== "Embedded") {
        yield* Effect.addFinalizer(() => Effect.ignore(sql`DROP TABLE IF EXISTS ${sql(TABLE)}`))
      }
    }
    const [{ c }] = yield* sql<{ c: number | string }>`SELECT count(*) AS c FROM ${sql(TABLE)}`
    if (Number(c) > 0) return
    if (session.kind === "postgres") {
      yield* sql`INSERT INTO ${sql(TABLE)} (id, name, n)
        SELECT i, 'item-' || i, 0 FROM generate_series(1, ${ROWS}) AS i ON CONFLICT DO NOTHING`
    } else {
      yield* sql`WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ${ROWS})
        INSERT OR IGNORE INTO ${sql(TABLE)} (id, name, n) SELECT i, 'item-' || i, 0 FROM s`
    }
  })
}

/**
 * The server's version: PostgreSQL's `server_version`, or SQLite's `sqlite_version()`.
 *
 * @since 0.1.0
 * @category workloads
 */
export const version = (session: Session): Effect.Effect<string, SqlError> => {
  const sql = session.sql
  return session.kind === "postgres"
    ? Effect.map(sql<{ v: string }>`SELECT current_setting('server_version') AS v`, (rows) => `PostgreSQL ${rows[0].v}`)
    : Effect.map(sql<{ v: string }>`SELECT sqlite_version() AS v`, (rows) => `SQLite ${rows[0].v}`)
}
