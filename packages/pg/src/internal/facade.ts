import type * as ConnectionPool from "@connection-pool/core/ConnectionPool"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Scope from "effect/Scope"
import type pg from "pg"
import { cancel, markBroken } from "./driver.js"

type Callback = (error: Error | undefined, client?: pg.PoolClient, release?: (error?: Error | boolean) => void) => void

const cancelQuery = /^SELECT pg_cancel_backend\((-?\d+)\)$/ // PgBouncer hands out negative pids
// @effect/sql-pg 0.53 sends `NOTIFY "chan", $1`, which PostgreSQL rejects (42601: NOTIFY takes no parameters; it
// fails the same on pg-pool). `pg_notify(channel, payload)` is the documented equivalent for a quoted channel.
const notifyQuery = /^NOTIFY ("(?:[^"]|"")+"), \$1$/

const rewrite = (text: string, params: Array<unknown> | undefined): readonly [string, Array<unknown> | undefined] => {
  const notify = notifyQuery.exec(text)
  if (notify === null || params?.length !== 1) return [text, params]
  return ["SELECT pg_notify($1, $2)", [notify[1].slice(1, -1).replace(/""/g, "\""), params[0]]]
}

/**
 * The part of `pg.Pool` that @effect/sql-pg's `PgClient.fromPool` uses, served by our pool: `connect` for
 * statements, transactions and cursors, `query` for NOTIFY and cancellation, and `options` for its LISTEN client.
 * @internal
 */
export const make = (
  pool: ConnectionPool.ConnectionPool<pg.Client>,
  options: pg.PoolConfig
): Effect.Effect<pg.Pool, never, Scope.Scope> =>
  Effect.gen(function*() {
    // callbacks from pg start effects through this runtime, their fibers owned by the layer's scope
    const run = yield* FiberSet.makeRuntime<never, unknown, unknown>()
    const byPid = new Map<number, pg.Client>()
    let ending = false
    yield* Effect.addFinalizer(() => Effect.sync(() => void (ending = true)))

    const checkout = Effect.gen(function*() {
      const scope = yield* Scope.make()
      const client = yield* Effect.onError(Scope.extend(pool.get, scope), (cause) => Scope.close(scope, Exit.failCause(cause)))
      const pid = (client as unknown as { processID: number }).processID
      byPid.set(pid, client)
      let released = false
      const release = (error?: Error | boolean) => {
        if (released) return
        released = true
        byPid.delete(pid)
        if (error) markBroken(client) // pg-pool's contract: an argument means "destroy, don't reuse"
        run(Scope.close(scope, Exit.void))
      }
      ;(client as pg.PoolClient).release = release
      return client as pg.PoolClient
    })

    const facade = {
      options,
      get ending() {
        return ending
      },
      get totalCount() {
        return 0
      },
      connect(callback?: Callback): any {
        if (callback === undefined) {
          return new Promise((resolve, reject) => facade.connect((e, c) => e ? reject(e) : resolve(c)))
        }
        run(Effect.matchEffect(checkout, {
          onFailure: (error) => Effect.sync(() => callback(error as unknown as Error)),
          onSuccess: (client) => Effect.sync(() => callback(undefined, client, client.release))
        }))
      },
      query(text: string, values?: unknown, callback?: (error: Error | null, result?: pg.QueryResult) => void): any {
        const cb = typeof values === "function" ? values as typeof callback : callback
        const params = typeof values === "function" ? undefined : values as Array<unknown> | undefined
        const pid = cancelQuery.exec(text)?.[1]
        const own = pid === undefined ? undefined : byPid.get(Number(pid))
        const effect: Effect.Effect<pg.QueryResult | undefined, unknown> = own !== undefined
          ? Effect.as(cancel(own), undefined) // sql-pg cancelling one of ours: no pooled connection needed
          : pool.withConnection((client) =>
            Effect.async<pg.QueryResult, Error>((resume) => {
              const [sql, args] = rewrite(text, params)
              client.query(sql, args as Array<unknown>, (error: Error | null, result: pg.QueryResult) =>
                resume(error ? Effect.fail(error) : Effect.succeed(result)))
            })
          )
        if (cb === undefined) return new Promise((resolve, reject) => facade.query(text, params, (e, r) => e ? reject(e) : resolve(r)))
        run(Effect.matchEffect(effect, {
          onFailure: (error) => Effect.sync(() => cb(error as Error)),
          onSuccess: (result) => Effect.sync(() => cb(null, result))
        }))
      },
      on() {
        return facade
      },
      end() {
        return Promise.resolve()
      }
    }
    return facade as unknown as pg.Pool
  })
