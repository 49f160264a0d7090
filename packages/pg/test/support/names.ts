/**
 * Run by Names.test.ts under tsx (esbuild keepNames) with the suite's server in `PG_NAMES_URL`: statements through
 * each path of the pg package, printed as JSON: the `__name` calls each made per statement.
 */
import type * as EffectT from "effect/Effect"

const { printNamesPer } = await import("../../../core/test/support/keepNames.js")
const { Effect, Exit, Layer, Redacted, Scope } = await import("effect")
const { SqlClient } = await import("@effect/sql")
const { PgPool } = await import("../../src/index.js")

const N = 500
const scope = Effect.runSync(Scope.make())
const layer = PgPool.layer({ url: Redacted.make(process.env.PG_NAMES_URL!), maxSize: 2, applicationName: "cp-names" })
const context = await Effect.runPromise(Scope.extend(Layer.build(layer), scope))
/** Ten callers looping `statement`, `N` statements in all: on a pool of two, most wait for a connection. */
const loops = (statement: EffectT.Effect<unknown, unknown, any>) => () =>
  Effect.runPromise(Effect.provide(Effect.forEach(Array.from({ length: 10 }), () => Effect.repeatN(statement, N / 10 - 1), { concurrency: "unbounded", discard: true }), context) as EffectT.Effect<void, unknown>)

await printNamesPer({
  PgClient: loops(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`)),
  "PgPool.withConnection + PgPool.query": loops(PgPool.withConnection((client) => PgPool.query(client, "SELECT 1"))),
  "PgPool.get, scoped": loops(Effect.scoped(Effect.flatMap(PgPool.PgPool.get, (client) => PgPool.query(client, "SELECT 1"))))
}, N)
await Effect.runPromise(Scope.close(scope, Exit.void))
