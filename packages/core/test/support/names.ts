/**
 * Run by Names.test.ts as `node --import tsx support/names.ts`: borrows through each path of the core under tsx,
 * whose esbuild `keepNames` wraps every closure bound to a name in a `__name` call (an `Object.defineProperty` of
 * its `name`), and prints, as JSON, how many such calls each path made per borrow.
 */
import type * as EffectT from "effect/Effect"
import type * as ExitT from "effect/Exit"

const { namesPer } = await import("./keepNames.js")

const { Effect, Exit, Scope } = await import("effect")
const { ConnectionPool } = await import("../../src/index.js")

const BORROWS = 1000
const scope = Effect.runSync(Scope.make())
let next = 0
const pool = await Effect.runPromise(Scope.extend(
  ConnectionPool.make({ maxSize: 2, driver: { connect: Effect.sync(() => ({ id: next++ })), close: () => Effect.void } }),
  scope
))
const callback = (conn: { id: number }, done: (exit: ExitT.Exit<number>) => void) =>
  void setImmediate(() => done(Exit.succeed(conn.id)))
const paths: Record<string, EffectT.Effect<unknown, unknown>> = {
  // ten callers on two connections: most borrows wait, some are served from idle
  withConnection: pool.withConnection(() => Effect.yieldNow()),
  withConnectionTry: Effect.ignore(pool.withConnectionTry(() => Effect.yieldNow())),
  get: Effect.scoped(Effect.zipRight(pool.get, Effect.yieldNow())),
  withConnectionCallback: pool.withConnectionCallback(callback),
  // a fresh borrow effect per call, as `PgClient` builds one per statement
  "withConnectionCallback, built per call": Effect.suspend(() => pool.withConnectionCallback(callback))
}
const perBorrow: Record<string, number> = {}
for (const [name, borrow] of Object.entries(paths)) {
  const run = Effect.forEach(Array.from({ length: 10 }), () => Effect.repeatN(borrow, BORROWS / 10 - 1), {
    concurrency: "unbounded",
    discard: true
  })
  perBorrow[name] = await namesPer(() => Effect.runPromise(run), BORROWS)
}
await Effect.runPromise(Scope.close(scope, Exit.void))
console.log(JSON.stringify(perBorrow))
