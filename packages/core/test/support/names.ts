/**
 * Run by Names.test.ts under tsx (esbuild keepNames): borrows through each path of the core and prints, as JSON,
 * the `__name` calls each made per borrow (see `keepNames.ts`).
 */
import type * as EffectT from "effect/Effect"
import type * as ExitT from "effect/Exit"

const { printNamesPer } = await import("./keepNames.js")
const { Effect, Exit, Scope } = await import("effect")
const { ConnectionPool } = await import("../../src/index.js")

const N = 1000
/** Ten callers looping `borrow`, `N` borrows in all: on a pool of two, most wait. */
const loops = (borrow: EffectT.Effect<unknown, unknown>) => () =>
  Effect.runPromise(Effect.forEach(Array.from({ length: 10 }), () => Effect.repeatN(borrow, N / 10 - 1), { concurrency: "unbounded", discard: true }))

const scope = Effect.runSync(Scope.make())
let next = 0
const pool = await Effect.runPromise(Scope.extend(
  ConnectionPool.make({ maxSize: 2, driver: { connect: Effect.sync(() => ({ id: next++ })), close: () => Effect.void } }),
  scope
))
const callback = (conn: { id: number }, done: (exit: ExitT.Exit<number>) => void) =>
  void setImmediate(() => done(Exit.succeed(conn.id)))
await printNamesPer({
  withConnection: loops(pool.withConnection(() => Effect.yieldNow())),
  withConnectionTry: loops(Effect.ignore(pool.withConnectionTry(() => Effect.yieldNow()))),
  get: loops(Effect.scoped(Effect.zipRight(pool.get, Effect.yieldNow()))),
  withConnectionCallback: loops(pool.withConnectionCallback(callback)),
  // a fresh borrow effect per call, as `PgClient` builds one per statement
  "withConnectionCallback, built per call": loops(Effect.suspend(() => pool.withConnectionCallback(callback)))
}, N)
await Effect.runPromise(Scope.close(scope, Exit.void))
