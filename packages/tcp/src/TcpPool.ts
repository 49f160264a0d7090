/**
 * Pools of TCP or TLS connections keyed by endpoint, for any protocol: Redis, HTTP/1.1, a database, your own.
 *
 * Each endpoint gets its own `ConnectionPool` from `@connection-pool/core`, made the first time it is borrowed
 * from, so FIFO waiting, `acquireTimeout`, interruption safety, validation, idle reaping and lifetimes come from
 * the core. On top: a global cap across endpoints (`maxConnections`), endpoints idle past `endpointIdleTimeout`
 * evicted with their connections, connects retried with jittered exponential backoff over every address of the
 * host, typed DNS / connect / timeout / TLS errors, SNI by default, and protocol hooks that decide when a
 * connection may be reused.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpPool } from "@connection-pool/tcp"
 *
 * const program = TcpPool.withConnection("localhost:6379", (conn) =>
 *   Effect.zipRight(conn.write("PING\r\n"), conn.read)
 * ).pipe(Effect.provide(TcpPool.layer({ maxConnectionsPerEndpoint: 4 })))
 * ```
 *
 * @since 0.1.0
 */
import type { InvalidConfig } from "@connection-pool/core/PoolError"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type { Pipeable } from "effect/Pipeable"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type * as Connection from "./Connection.js"
import type * as Endpoint from "./Endpoint.js"
import * as internal from "./internal/pool.js"
import type { DnsResolutionFailed, InvalidEndpoint, SocketError, TcpPoolError } from "./TcpError.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = internal.TypeId as TypeId

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * TLS settings, used for every endpoint when given, and for `secure` endpoints (`https:`, `rediss:`) with Node's
 * defaults when not. The SNI name (and the name the certificate must match) is `servername`, else the endpoint's
 * host when that is a name.
 *
 * @since 0.1.0
 * @category models
 */
export interface TlsOptions {
  /** Trusted CA certificates (PEM), instead of Node's bundled ones. */
  readonly ca?: string | Uint8Array | ReadonlyArray<string | Uint8Array> | undefined
  /** A client certificate (PEM), for servers that ask for one. */
  readonly cert?: string | Uint8Array | undefined
  /** The client certificate's private key (PEM). */
  readonly key?: Redacted.Redacted<string> | Uint8Array | undefined
  readonly servername?: string | undefined
  /** Default `true`: a certificate that does not verify fails the connect with `TlsFailed`. */
  readonly rejectUnauthorized?: boolean | undefined
  /** Protocols offered by ALPN, in order of preference (`["http/1.1"]`). */
  readonly ALPN?: ReadonlyArray<string> | undefined
}

/**
 * Resolves a host name to IP addresses, tried in the order given. The default is the system's `dns.lookup`
 * with every address; replace it for service discovery (or tests).
 *
 * @since 0.1.0
 * @category models
 */
export type Resolver = (hostname: string) => Effect.Effect<ReadonlyArray<string>, DnsResolutionFailed>

/**
 * How a protocol takes part in the pool's decisions. Every hook is optional.
 *
 * @since 0.1.0
 * @category models
 */
export interface Protocol {
  /**
   * Runs once on a new connection before it is lent (a handshake, `AUTH`, `SELECT db`), bounded by
   * `connectTimeout`. A failure closes it and fails the borrow with `ConnectionFailed` (`phase: "handshake"`),
   * not retried.
   */
  readonly onCreate?: ((conn: Connection.Connection) => Effect.Effect<void, unknown>) | undefined
  /**
   * Runs each time a connection is lent, before the caller's code. A failure closes it and fails the borrow with
   * `ConnectionFailed` (`phase: "handshake"`).
   */
  readonly onAcquire?: ((conn: Connection.Connection) => Effect.Effect<void, unknown>) | undefined
  /**
   * Runs when the caller is done (not after an interruption or a defect: the connection is closed then). Call
   * `conn.invalidate()` here to close it instead of reusing it.
   */
  readonly onRelease?: ((conn: Connection.Connection) => Effect.Effect<void>) | undefined
  /**
   * Asked synchronously at release and at checkout: `false` closes the connection (a reply still pending, a
   * response not fully read, a `Connection: close`). Open sockets with nothing unread pass without it.
   */
  readonly isHealthy?: ((conn: Connection.Connection) => boolean) | undefined
  /**
   * Checks a connection idle longer than `validationBypass` before it is lent (a `PING`). `false` or a failure
   * closes it and the caller gets another.
   */
  readonly validate?: ((conn: Connection.Connection) => Effect.Effect<boolean>) | undefined
  /**
   * Runs exactly once per connection, before its socket is destroyed (a `QUIT` when `conn.isOpen`). Keep it
   * short: the pool's shutdown waits for it.
   */
  readonly onClose?: ((conn: Connection.Connection) => Effect.Effect<void>) | undefined
}

/**
 * Pool options, each also readable from `Config` (see {@link layerConfig}). Times take any
 * `Duration.DurationInput`; `Duration.infinity` turns off `idleTimeout`, `maxLifetime`, `endpointIdleTimeout`
 * and `keepAlive`. Every value is checked once, in `make`: a value out of range fails with `InvalidConfig`.
 *
 * @since 0.1.0
 * @category models
 */
export interface PoolConfig {
  /** Names the pool in logs and metrics; each endpoint's pool is `"<name> <endpoint>"`. Default `"tcp"`. */
  readonly name?: string | undefined
  /** Most connections open to one endpoint, in use or idle. Default 10. */
  readonly maxConnectionsPerEndpoint?: number | undefined
  /**
   * Overload shedding per endpoint (the core's `maxWaiting`): when this many callers already wait for one
   * endpoint's connection, the next fails at once with `PoolOverloaded` instead of queueing. Default unlimited.
   */
  readonly maxWaitingPerEndpoint?: number | undefined
  /** Also shed a caller whose expected wait exceeds its `acquireTimeout` (the core's option). Default false. */
  readonly shedOnExpectedWait?: boolean | undefined
  /** Most idle connections kept per endpoint; more are closed as they come back. Default: all of them. */
  readonly maxIdlePerEndpoint?: number | undefined
  /**
   * Most connections open across all endpoints. When reached, a connect first closes the longest-idle
   * connection of another endpoint, else waits for one to close. Default: no cap.
   */
  readonly maxConnections?: number | undefined
  /** An idle connection is closed after this long. Default 30 seconds. */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /** A connection is closed once this old (with a little jitter), never while in use. Default 30 minutes. */
  readonly maxLifetime?: Duration.DurationInput | undefined
  /** A connection is closed after being lent this many times. Default: unlimited. */
  readonly maxUses?: number | undefined
  /** Longest one TCP connect (and one DNS lookup) may take. Default 10 seconds. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** Longest a TLS handshake may take. Default 10 seconds. */
  readonly tlsHandshakeTimeout?: Duration.DurationInput | undefined
  /** Longest a caller waits for a connection, connects and retries included, before `PoolTimeout`. Default 30 s. */
  readonly acquireTimeout?: Duration.DurationInput | undefined
  /** Extra attempts after a refused, reset or timed-out connect. Default 2. */
  readonly connectRetries?: number | undefined
  /** First backoff between attempts; it doubles up to `connectBackoffMax`, jittered. Default 100 millis. */
  readonly connectBackoff?: Duration.DurationInput | undefined
  /** Default 5 seconds. */
  readonly connectBackoffMax?: Duration.DurationInput | undefined
  /** A connection idle for less than this is lent without the protocol's `validate`. Default 500 millis. */
  readonly validationBypass?: Duration.DurationInput | undefined
  /** An endpoint nobody borrowed from for this long is dropped with its connections. Default 5 minutes. */
  readonly endpointIdleTimeout?: Duration.DurationInput | undefined
  /** When the pool's scope closes, how long connections in use have before they are closed. Default 30 s. */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
  /** `TCP_NODELAY`. Default `true`. */
  readonly noDelay?: boolean | undefined
  /** TCP keep-alive probes after this much silence; `0` turns them off. Default 60 seconds. */
  readonly keepAlive?: Duration.DurationInput | undefined
  readonly tls?: TlsOptions | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options extends PoolConfig {
  readonly protocol?: Protocol | undefined
  readonly resolver?: Resolver | undefined
}

/**
 * One endpoint's pool: its gauges and its counters since it was created (or last evicted).
 *
 * @since 0.1.0
 * @category models
 */
export interface EndpointStats {
  readonly endpoint: Endpoint.Endpoint
  /** Connections lent out. */
  readonly active: number
  readonly idle: number
  /** Connects in flight. */
  readonly pending: number
  /** Callers waiting for a connection. */
  readonly waiting: number
  readonly maxSize: number
  /** Connections opened: the borrows that missed. */
  readonly created: number
  /** Borrows served by an existing connection: the hits. */
  readonly reused: number
  readonly acquired: number
  /** Connections closed. */
  readonly closed: number
  /** Failed connect attempts and connections lost to a socket error. */
  readonly errors: number
  /** Waits that ended in `PoolTimeout`. */
  readonly timeouts: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  readonly name: string
  /** Connections open or opening, across endpoints. */
  readonly connections: number
  readonly maxConnections: number
  /** Connects waiting for room under `maxConnections`. */
  readonly waitingForRoom: number
  /** Sockets not yet closed, those still connecting included. */
  readonly sockets: number
  readonly endpoints: ReadonlyArray<EndpointStats>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface TcpPool extends Pipeable {
  readonly [TypeId]: TypeId
  readonly name: string
  /** A connection to `endpoint`, back to its pool when the caller's scope closes (closed after an interruption). */
  connection(endpoint: Endpoint.Input): Effect.Effect<Connection.Connection, TcpPoolError, Scope.Scope>
  /** A connection for the duration of `f`. A typed failure of `f` returns it; an interruption or defect closes it. */
  withConnection<X, E, R>(
    endpoint: Endpoint.Input,
    f: (conn: Connection.Connection) => Effect.Effect<X, E, R>
  ): Effect.Effect<X, E | TcpPoolError, R>
  /**
   * One request and its reply, for request/response protocols (Redis, memcached, HTTP/1.1 without streaming):
   * writes `request` on a borrowed connection and hands each arriving chunk to `parse` (everything received so far)
   * until it returns the reply and how many bytes it took. Runs as a callback on the socket, so a caller that
   * waits is woken once, with the reply, and costs less than `withConnection`. An interruption closes the
   * connection. With `onAcquire` / `onRelease` hooks it runs through `withConnection`.
   */
  exchange<X>(
    endpoint: Endpoint.Input,
    request: string | Uint8Array,
    parse: (data: Buffer) => readonly [reply: X, consumed: number] | undefined
  ): Effect.Effect<X, TcpPoolError | SocketError>
  /** `None` for an endpoint never borrowed from, or evicted. */
  stats(endpoint: Endpoint.Input): Effect.Effect<Option.Option<EndpointStats>, InvalidEndpoint>
  readonly allStats: Effect.Effect<Stats>
  /** Closes the endpoint's idle connections now and those in use when they come back. */
  clearEndpoint(endpoint: Endpoint.Input): Effect.Effect<void, InvalidEndpoint>
}

/**
 * The pool as a service.
 *
 * @since 0.1.0
 * @category tags
 */
export const TcpPool: Context.Tag<TcpPool, TcpPool> = Context.GenericTag<TcpPool>("@connection-pool/tcp/TcpPool")

/**
 * @since 0.1.0
 * @category refinements
 */
export const isTcpPool: (u: unknown) => u is TcpPool = internal.isTcpPool

/**
 * Builds a pool in the current scope. No connection opens until one is borrowed; closing the scope shuts every
 * endpoint's pool down and waits until every socket is closed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options?: Options) => Effect.Effect<TcpPool, InvalidConfig, Scope.Scope> = internal.make

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: (options?: Options) => Layer.Layer<TcpPool, InvalidConfig> = internal.layer

/**
 * The options read from `Config`, for example `Config.integer("REDIS_POOL_SIZE")`; the hooks and the resolver,
 * being code, are given beside it.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: (
  config: Config.Config.Wrap<PoolConfig>,
  hooks?: { readonly protocol?: Protocol | undefined; readonly resolver?: Resolver | undefined }
) => Layer.Layer<TcpPool, ConfigError.ConfigError | InvalidConfig> = internal.layerConfig

/**
 * @since 0.1.0
 * @category accessors
 */
export const connection = (
  endpoint: Endpoint.Input
): Effect.Effect<Connection.Connection, TcpPoolError, Scope.Scope | TcpPool> =>
  Effect.flatMap(TcpPool, (pool) => pool.connection(endpoint))

/**
 * @since 0.1.0
 * @category accessors
 */
export const withConnection = <X, E, R>(
  endpoint: Endpoint.Input,
  f: (conn: Connection.Connection) => Effect.Effect<X, E, R>
): Effect.Effect<X, E | TcpPoolError, R | TcpPool> =>
  Effect.flatMap(TcpPool, (pool) => pool.withConnection(endpoint, f))

/**
 * See {@link TcpPool.exchange}.
 *
 * @since 0.1.0
 * @category accessors
 */
export const exchange = <X>(
  endpoint: Endpoint.Input,
  request: string | Uint8Array,
  parse: (data: Buffer) => readonly [reply: X, consumed: number] | undefined
): Effect.Effect<X, TcpPoolError | SocketError, TcpPool> =>
  Effect.flatMap(TcpPool, (pool) => pool.exchange(endpoint, request, parse))

/**
 * @since 0.1.0
 * @category accessors
 */
export const stats = (
  endpoint: Endpoint.Input
): Effect.Effect<Option.Option<EndpointStats>, InvalidEndpoint, TcpPool> =>
  Effect.flatMap(TcpPool, (pool) => pool.stats(endpoint))

/**
 * @since 0.1.0
 * @category accessors
 */
export const allStats: Effect.Effect<Stats, never, TcpPool> = Effect.flatMap(TcpPool, (pool) => pool.allStats)

/**
 * @since 0.1.0
 * @category accessors
 */
export const clearEndpoint = (endpoint: Endpoint.Input): Effect.Effect<void, InvalidEndpoint, TcpPool> =>
  Effect.flatMap(TcpPool, (pool) => pool.clearEndpoint(endpoint))
