/**
 * Run by Names.test.ts as `node --import tsx support/names.ts` with the suite's server in `PG_NAMES_URL`: runs
 * statements through each path of the pg package under tsx, whose esbuild `keepNames` wraps every closure bound
 * to a name in a `__name` call, and prints, as JSON, how many such calls each path made per statement.
 */
import type * as EffectT from "effect/Effect"

const { namesPer } = await import("../../../core/test/support/keepNames.js")

const { Effect, Exit, Layer, Redacted, Scope } = await import("effect")
const { SqlClient } = await import("@effect/sql")
const { PgPool } = await import("../../src/index.js")

const STATEMENTS = 500
const scope = Effect.runSync(Scope.make())
const layer = PgPool.layer({ url: Redacted.make(process.env.PG_NAMES_URL!), maxSize: 2, applicationName: "cp-names" })
const context = await Effect.runPromise(Scope.extend(Layer.build(layer), scope))
const paths: Record<string, EffectT.Effect<unknown, unknown, any>> = {
  // ten callers on two connections: most statements wait for a connection
  PgClient: Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`),
  "PgPool.withConnection + PgPool.query": PgPool.withConnection((client) => PgPool.query(client, "SELECT 1")),
  "PgPool.get, scoped": Effect.scoped(Effect.flatMap(PgPool.PgPool.get, (client) => PgPool.query(client, "SELECT 1")))
}
const perStatement: Record<string, number> = {}
for (const [name, statement] of Object.entries(paths)) {
  const run: EffectT.Effect<void, unknown> = Effect.provide(
    Effect.forEach(Array.from({ length: 10 }), () => Effect.repeatN(statement, STATEMENTS / 10 - 1), {
      concurrency: "unbounded",
      discard: true
    }),
    context
  ) as EffectT.Effect<void, unknown>
  perStatement[name] = await namesPer(() => Effect.runPromise(run), STATEMENTS)
}
await Effect.runPromise(Scope.close(scope, Exit.void))
console.log(JSON.stringify(perStatement))
