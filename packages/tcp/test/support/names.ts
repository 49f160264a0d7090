/**
 * Run by Names.test.ts under tsx (esbuild keepNames) with a redis-server's port in `NAMES_REDIS_PORT`: requests
 * through each borrowing path of the tcp package, printed as JSON: the `__name` calls each made per request.
 */
import type * as EffectT from "effect/Effect"
import type * as Connection from "../../src/Connection.js"

const { printNamesPer } = await import("../../../core/test/support/keepNames.js")
const { Effect, Exit, Scope } = await import("effect")
const { TcpPool } = await import("../../src/index.js")

const N = 1000
/** Ten callers looping `request`, `N` requests in all: on two connections, most wait. */
const loops = (request: EffectT.Effect<unknown, unknown>) => () =>
  Effect.runPromise(Effect.forEach(Array.from({ length: 10 }), () => Effect.repeatN(request, N / 10 - 1), { concurrency: "unbounded", discard: true }))

const endpoint = `127.0.0.1:${process.env.NAMES_REDIS_PORT}`
const PING = "*1\r\n$4\r\nPING\r\n"
const line = (data: Buffer) => {
  const end = data.indexOf("\r\n")
  return end === -1 ? undefined : ([data.toString("latin1", 0, end), end + 2] as const)
}
const ping = (conn: Connection.Connection) =>
  Effect.zipRight(conn.write(PING), Effect.map(conn.read, (chunk) => Buffer.from(chunk).toString("latin1")))
const scope = Effect.runSync(Scope.make())
const pool = await Effect.runPromise(Scope.extend(TcpPool.make({ maxConnectionsPerEndpoint: 2 }), scope))
await printNamesPer({
  exchange: loops(pool.exchange(endpoint, PING, line)),
  withConnection: loops(pool.withConnection(endpoint, ping)),
  "connection, scoped": loops(Effect.scoped(Effect.flatMap(pool.connection(endpoint), ping)))
}, N)
await Effect.runPromise(Scope.close(scope, Exit.void))
