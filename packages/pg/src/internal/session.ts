import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as net from "node:net"
import pg from "pg"

/**
 * Connection-class failures: the session is gone or going. SQLSTATE class 08 and 57P01..03 from the server, the
 * socket errors node reports, and the errors pg makes up when the socket closes or already has.
 * @internal
 */
export const isConnectionFailure = (error: unknown): boolean => {
  if (typeof error !== "object" || error === null) return false
  const { code, message } = error as { code?: unknown; message?: unknown }
  if (typeof code === "string") {
    if (code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03") return true
    if (code === "ECONNRESET" || code === "EPIPE" || code === "ETIMEDOUT" || code === "ERR_STREAM_DESTROYED") {
      return true
    }
  }
  return typeof message === "string" && lostMessages.some((m) => message.startsWith(m))
}

const lostMessages = [
  "Connection terminated",
  "Client has encountered a connection error and is not queryable",
  "Client was closed and is not queryable"
]

type Callback = (error: Error | null, result: unknown) => void

/**
 * The `pg.Client` our driver opens. It keeps, in fields of its own, what the pool must know when the client comes
 * back (pg's own `_activeQuery`, `_queryQueue`, `_queryable` and `_ending` are private and go away in pg 9): how
 * many queries it was given that have not completed, and the failure that lost its session, if any. Every query
 * goes through `query` (ours, raw ones of the user's, pg-cursor's), so a connection-class failure marks the client
 * lost before the caller's callback runs: a client whose backend died is never lent again.
 * @internal
 */
export class PoolClient extends pg.Client {
  /** Queries given to pg and not completed yet (running or queued in pg). */
  inFlight = 0
  /** Queries given to pg so far, and how many had been when a CancelRequest was last sent. */
  submitted = 0
  cancelledAt = -1
  /** Why the session is gone (the first connection-class failure, `error` or `end`); undefined while healthy. */
  lost: unknown = undefined
  /** `end` was called. */
  ending = false

  constructor(config: pg.ClientConfig) {
    super(config)
    this.on("error", (error) => this.markLost(error))
    this.on("end", () => this.markLost(new Error("Connection terminated")))
  }

  markLost(error: unknown): void {
    if (this.lost === undefined) this.lost = error
  }

  /** Counts the query until pg completes it, in each of the forms pg takes (submittable, callback, promise). */
  override query(config: any, values?: any, callback?: any): any {
    if (config === null || config === undefined) return super.query(config, values, callback) // pg throws
    // one tracker per query and anonymous callbacks only: a closure bound to a name costs a `__name` call per query
    // where the code is compiled with esbuild's keepNames (tsx), several times what the closure itself costs
    const query = new Tracked(this)
    this.inFlight++
    this.submitted++
    try {
      if (typeof config.submit === "function") {
        // pg calls one of these when the query leaves its hands: ReadyForQuery, or the error that ends it
        const ready = config.handleReadyForQuery
        const failed = config.handleError
        config.handleReadyForQuery = function(this: unknown, con: unknown) {
          query.finish(undefined)
          return ready.call(this, con)
        }
        config.handleError = function(this: unknown, error: unknown, con: unknown) {
          query.finish(error)
          return failed.call(this, error, con)
        }
        return super.query(config, values, callback)
      }
      if (typeof values === "function") return super.query(config, query.wrap(values))
      if (typeof callback === "function") return super.query(config, values, query.wrap(callback))
      if (typeof config === "object" && typeof config.callback === "function") {
        return super.query(config, values, query.wrap(config.callback))
      }
      const result: Promise<unknown> = super.query(config, values)
      // registered before the caller's own handlers, so the count is right when they run
      result.then(() => query.finish(undefined), (error) => query.finish(error))
      return result
    } catch (error) {
      query.finish(undefined)
      throw error
    }
  }

  override end(): Promise<void>
  override end(callback: (err: Error) => void): void
  override end(callback?: (err: Error) => void): Promise<void> | void {
    this.ending = true
    return callback === undefined ? super.end() : super.end(callback)
  }
}

/** One query given to a `PoolClient`, until pg completes it: counted out of `inFlight` once. */
class Tracked {
  private done = false
  constructor(readonly client: PoolClient) {}

  finish(error: unknown): void {
    if (this.done) return
    this.done = true
    this.client.inFlight--
    if (error && isConnectionFailure(error)) this.client.markLost(error)
  }

  /** `f`, called once pg completes the query, after the count. */
  wrap(f: Callback): Callback {
    return (error, result) => {
      this.finish(error)
      f(error, result)
    }
  }
}

const asPool = (client: pg.Client): PoolClient | undefined => client instanceof PoolClient ? client : undefined

/** The failure that lost this client's session, if it is known to be gone. @internal */
export const lostError = (client: pg.Client): unknown => asPool(client)?.lost

/** @internal */
export const markBroken = (client: pg.Client, error: unknown = new Error("connection marked broken")): void =>
  asPool(client)?.markLost(error)


/** A client that can serve the next borrower: healthy, not ending, and with nothing in flight. @internal */
export const reusable = (client: pg.Client): boolean => {
  const c = asPool(client)
  return c !== undefined && c.lost === undefined && !c.ending && c.inFlight === 0
}

/**
 * Before closing a client that still has a query in flight: cancels it on the server, unless a CancelRequest went
 * out since the last query was given to pg (an interrupted statement's own). @internal
 */
export const cancelBeforeClose = (client: pg.Client): Effect.Effect<void> => {
  const c = asPool(client)
  if (c === undefined || c.lost !== undefined || c.inFlight === 0 || c.cancelledAt === c.submitted) return Effect.void
  return cancel(client)
}

/** Sends PostgreSQL's CancelRequest on a fresh socket: cancelling never needs a pooled connection. @internal */
export const cancel = (client: pg.Client): Effect.Effect<void> => {
  const { processID, secretKey } = client as unknown as { processID: number | null; secretKey: number | null }
  if (processID === null || secretKey === null) return Effect.void
  const c = asPool(client)
  if (c !== undefined) c.cancelledAt = c.submitted
  return Effect.async<void>((resume) => {
    const host = client.host
    const socket = host.startsWith("/")
      ? net.connect({ path: `${host}/.s.PGSQL.${client.port}` })
      : net.connect({ host, port: client.port })
    const done = () => resume(Effect.void)
    socket.once("connect", () => {
      const packet = Buffer.alloc(16)
      packet.writeInt32BE(16, 0)
      packet.writeInt32BE(80877102, 4)
      packet.writeInt32BE(processID, 8)
      packet.writeInt32BE(secretKey, 12)
      // like libpq, let the server close the socket once the cancel is handled: hanging up first crashes
      // PgBouncer 1.18 (pgbouncer/pgbouncer#801)
      socket.write(packet)
    })
    socket.once("end", () => socket.end())
    socket.once("close", done)
    socket.once("error", done)
    return Effect.sync(() => socket.destroy())
  }).pipe(Effect.timeoutOption(Duration.seconds(2)), Effect.asVoid)
}
