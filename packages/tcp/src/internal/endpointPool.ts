import * as ConnectionPool from "@connection-pool/core/ConnectionPool"
import { ConnectionError } from "@connection-pool/core/PoolError"
import type * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as net from "node:net"
import type * as Endpoint from "../Endpoint.js"
import type * as TcpPool from "../TcpPool.js"
import {
  type ConnectError,
  ConnectionFailed,
  ConnectionTimeout,
  isConnectError,
  type PoolClosed,
  type SocketError
} from "../TcpError.js"
import { type Connector, destroyAll, open } from "./connect.js"
import { ConnectionImpl, type Owner } from "./connection.js"
import type { Limiter } from "./limiter.js"
import * as metrics from "./metrics.js"

/** One shared empty array of extra tags: the metrics carry theirs in their keys. */
const noTags: ReadonlyArray<never> = []

/** What every endpoint's pool shares with the others. @internal */
export interface Shared extends Connector {
  readonly protocol: TcpPool.Protocol
  readonly limiter: Limiter
  readonly clock: Clock.Clock
  /** Makes room under the global cap by closing the longest-idle connection of another endpoint. */
  readonly evictIdle: (except: EndpointState) => Effect.Effect<void>
}

/**
 * One endpoint: its core pool (made on first use), the connections it opened, and the counts the pool decides
 * eviction and reuse on. Plain fields, read and written only synchronously.
 * @internal
 */
export class EndpointState implements Owner {
  pool: ConnectionPool.ConnectionPool<ConnectionImpl> | undefined = undefined
  readonly conns = new Set<ConnectionImpl>()
  /** Connections lent out. */
  lent = 0
  /** When a caller last asked for or gave back a connection: eviction looks at it. */
  lastUsed: number
  /** Bumped by `clearEndpoint`: connections of an older generation are closed when they come back. */
  generation = 0
  errors = 0
  /** The scope its pool lives in, made with the pool. */
  scope: Scope.CloseableScope | undefined = undefined
  /** Whether a caller began building its pool. */
  started = false
  /** Taken out of the pool's endpoints (evicted, or the pool shut down): a later borrow makes a new state. */
  removed = false
  /** The pool being made, until `pool` is set. */
  pending: Effect.Effect<ConnectionPool.ConnectionPool<ConnectionImpl>, PoolClosed> | undefined = undefined
  readonly metrics: metrics.EndpointMetrics
  readonly name: string

  constructor(
    readonly endpoint: Endpoint.Endpoint,
    readonly shared: Shared,
    readonly ready: Deferred.Deferred<ConnectionPool.ConnectionPool<ConnectionImpl>, PoolClosed>
  ) {
    this.lastUsed = shared.clock.unsafeCurrentTimeMillis()
    this.metrics = metrics.forEndpoint(shared.options.name, endpoint)
    this.name = `${shared.options.name} ${endpoint.key}`
  }

  get tls(): TcpPool.TlsOptions | undefined {
    return this.shared.options.tls ?? (this.endpoint.secure ? {} : undefined)
  }

  /** The core pool's options: one endpoint's limits and timers; connects are retried here, not in the core. */
  get poolOptions(): ConnectionPool.Options<ConnectionImpl> {
    const o = this.shared.options
    return {
      name: this.name,
      maxSize: o.maxConnectionsPerEndpoint,
      acquireTimeout: o.acquireTimeout,
      connectTimeout: o.acquireTimeout,
      idleTimeout: o.idleTimeout,
      maxLifetime: o.maxLifetime,
      validationBypass: o.validationBypass,
      shutdownTimeout: o.shutdownTimeout,
      connectRetries: 0,
      driver: this.driver
    }
  }

  get driver(): ConnectionPool.Driver<ConnectionImpl> {
    const validate = this.shared.protocol.validate
    return {
      connect: Effect.mapError(this.connect, (error) => new ConnectionError({ reason: error.message, cause: error })),
      close: (conn) => this.close(conn),
      reusable: (conn) => this.reusable(conn),
      validate: validate === undefined ? undefined : (conn) => validate(conn)
    }
  }

  /**
   * The typed error behind a `ConnectionError` from the core: the core keeps the driver's error as `cause`, through
   * its retries and its circuit breaker.
   */
  typed(error: ConnectionError): ConnectError {
    if (isConnectError(error.cause)) return error.cause
    return new ConnectionFailed({
      endpoint: this.endpoint.key,
      attempts: error.attempts ?? 1,
      lastError: error.cause ?? error.reason,
      phase: "connect"
    })
  }

  /** `typed` as a failed Effect, made once: the borrow paths' error handler. */
  readonly retyped = (error: ConnectionError): Effect.Effect<never, ConnectError> => Effect.fail(this.typed(error))

  /** A permit under the global cap, then a socket (retried), then the protocol's `onCreate`. */
  get connect(): Effect.Effect<ConnectionImpl, ConnectError> {
    const { limiter } = this.shared
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(limiter.take(this.shared.evictIdle(this))), () => {
        const made: Array<net.Socket> = []
        return Effect.onExit(
          restore(this.open(made)),
          (exit) => exit._tag === "Failure" ? Effect.zipRight(destroyAll(this.shared, made), limiter.give) : Effect.void
        )
      })
    ).pipe(
      Effect.withSpan("TcpPool.connect", {
        kind: "client",
        attributes: {
          [metrics.attributes.address]: this.endpoint.host,
          [metrics.attributes.port]: this.endpoint.port,
          [metrics.attributes.poolName]: this.shared.options.name
        }
      }),
      Effect.annotateLogs({ pool: this.name })
    )
  }

  open(made: Array<net.Socket>): Effect.Effect<ConnectionImpl, ConnectError> {
    const clock = this.shared.clock
    const start = clock.unsafeCurrentTimeMillis()
    return open(this.shared, this.endpoint, this.tls, (error) => {
      this.errors++
      this.metrics.error(error._tag).unsafeUpdate(1, noTags)
    }, made).pipe(
      Effect.map(({ address, socket }) =>
        new ConnectionImpl(this.endpoint, socket, address, this.generation, clock.unsafeCurrentTimeMillis(), this)
      ),
      Effect.flatMap((conn) => Effect.as(this.handshake(conn), conn)),
      Effect.tap((conn) => {
        this.conns.add(conn)
        this.metrics.created.unsafeUpdate(1, noTags)
        this.metrics.connectTime.unsafeUpdate((clock.unsafeCurrentTimeMillis() - start) / 1000, noTags)
        return Effect.logDebug(`connection ${conn.id} opened to ${conn.address}`)
      })
    )
  }

  handshake(conn: ConnectionImpl): Effect.Effect<void, ConnectError> {
    const onCreate = this.shared.protocol.onCreate
    if (onCreate === undefined) return Effect.void
    const timeout = this.shared.options.connectTimeout
    return onCreate(conn).pipe(
      Effect.timeoutFail({
        duration: timeout,
        onTimeout: () =>
          new ConnectionTimeout({
            endpoint: this.endpoint.key,
            timeout: Duration.millis(timeout),
            phase: "handshake",
            attempts: 1
          })
      }),
      Effect.mapError((error) =>
        error instanceof ConnectionTimeout
          ? error
          : new ConnectionFailed({ endpoint: this.endpoint.key, attempts: 1, lastError: error, phase: "handshake" })
      ),
      Effect.onExit((exit) => exit._tag === "Failure" ? conn.close : Effect.void)
    )
  }

  /** The socket ended or failed under the pool: counted; the core drops it at its next release or checkout. */
  lost(_conn: ConnectionImpl, error: SocketError): void {
    if (error.code !== "EOF") this.errors++
  }

  close(conn: ConnectionImpl): Effect.Effect<void> {
    const onClose = this.shared.protocol.onClose
    const hook = onClose === undefined
      ? Effect.void
      : Effect.catchAllCause(onClose(conn), (cause) => Effect.logDebug("onClose failed", cause))
    return hook.pipe(
      Effect.zipRight(conn.close),
      Effect.zipRight(Effect.suspend(() => {
        this.conns.delete(conn)
        this.metrics.closed.unsafeUpdate(1, noTags)
        return Effect.zipRight(this.shared.limiter.give, Effect.logDebug(`connection ${conn.id} closed`))
      })),
      Effect.annotateLogs({ pool: this.name })
    )
  }

  /**
   * Asked by the core when a connection comes back and when an idle one is taken: open, nothing unread, not
   * invalidated or cleared, under `maxUses`, and healthy by the protocol's word. At release also: not over
   * `maxIdlePerEndpoint`, and not kept while any endpoint waits for room under the global cap (then endpoints take
   * turns at the cap instead of one keeping every connection).
   */
  reusable(conn: ConnectionImpl): boolean {
    const releasing = conn.releasing
    conn.releasing = false
    if (!conn.isOpen || conn.invalidated || conn.buffered > 0 || conn.generation !== this.generation) return false
    if (conn.uses >= this.shared.options.maxUses) return false
    const isHealthy = this.shared.protocol.isHealthy
    if (isHealthy !== undefined && !isHealthy(conn)) return false
    if (releasing) {
      if (this.conns.size - this.lent > this.shared.options.maxIdlePerEndpoint) return false
      if (this.shared.limiter.waiting > 0) return false
    }
    return true
  }

  /** Counts a connection handed to a caller. */
  lend(conn: ConnectionImpl): void {
    this.lent++
    conn.lent = true
    conn.uses++
    if (conn.uses > 1) this.metrics.reused.unsafeUpdate(1, noTags)
  }

  /** The caller is done with it: the core's release (and `reusable`) comes next. */
  giveBack(conn: ConnectionImpl): void {
    this.lent--
    conn.lent = false
    conn.releasing = true
    conn.releasedAt = this.lastUsed = this.shared.clock.unsafeCurrentTimeMillis()
  }
}
