/**
 * Run by Names.test.ts under tsx (esbuild keepNames) with a database file's path in `NAMES_DB`: statements through
 * each path of the sqlite package, printed as JSON: the `__name` calls each made per statement.
 */
import type * as SqlClientT from "@effect/sql/SqlClient"
import type * as EffectT from "effect/Effect"

const { printNamesPer } = await import("../../../core/test/support/keepNames.js")
const { Effect, Exit, Layer, Scope } = await import("effect")
const { SqlClient } = await import("@effect/sql")
const { SqlitePool } = await import("../../src/index.js")

const N = 1000
const scope = Effect.runSync(Scope.make())
const layer = SqlitePool.layer({ filename: process.env.NAMES_DB!, maxSize: 2 })
const context = await Effect.runPromise(Scope.extend(Layer.build(layer), scope))
const sql = <A>(f: (sql: SqlClientT.SqlClient) => EffectT.Effect<A, unknown>) =>
  Effect.provide(Effect.flatMap(SqlClient.SqlClient, f), context) as EffectT.Effect<A, unknown>
/** Ten fibers looping `statement`, `N` statements in all: reads share the reader's leases, writes queue. */
const loops = (statement: EffectT.Effect<unknown, unknown>) => () =>
  Effect.runPromise(Effect.forEach(Array.from({ length: 10 }), () => Effect.repeatN(statement, N / 10 - 1), { concurrency: "unbounded", discard: true }))

await Effect.runPromise(sql((sql) => sql`CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, n)`))
await printNamesPer({
  read: loops(sql((sql) => sql`SELECT n FROM t WHERE id = ${1}`)),
  write: loops(sql((sql) => sql`INSERT OR REPLACE INTO t (id, n) VALUES (${1}, ${2})`))
}, N)
await Effect.runPromise(Scope.close(scope, Exit.void))
