import * as ConnectionPool from "@connection-pool/core/ConnectionPool"
import { ConnectionError, type InvalidConfig, PoolClosed, type PoolError } from "@connection-pool/core/PoolError"
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Deferred from "effect/Deferred"
import * as Either from "effect/Either"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { pipeArguments } from "effect/Pipeable"
import { hasProperty } from "effect/Predicate"
import * as Scope from "effect/Scope"
import type * as net from "node:net"
import type * as Connection from "../Connection.js"
import type * as Endpoint from "../Endpoint.js"
import * as TcpPool from "../TcpPool.js"
import { ConnectionFailed, type InvalidEndpoint, type SocketError, type TcpPoolError } from "../TcpError.js"
import { systemResolver } from "./connect.js"
import { type ConnectionImpl, readParsed } from "./connection.js"
import { decode } from "./endpoint.js"
import { EndpointState, type Shared } from "./endpointPool.js"
import { Limiter } from "./limiter.js"
import { resolve, type Resolved } from "./options.js"

/** @internal */
export const TypeId: TcpPool.TypeId = Symbol.for("@connection-pool/tcp/TcpPool") as TcpPool.TypeId

/** @internal */
export const isTcpPool = (u: unknown): u is TcpPool.TcpPool => hasProperty(u, TypeId)

/** Ended in a value or a typed failure: the connection's state is known, so `onRelease` may look at it. */
const cleanly = (exit: Exit.Exit<unknown, unknown>): boolean =>
  Exit.isSuccess(exit) || !(Cause.isInterrupted(exit.cause) || Cause.isDie(exit.cause))

const isCoreConnectionError = (error: unknown): error is ConnectionError => error instanceof ConnectionError

class TcpPoolImpl implements TcpPool.TcpPool, Shared {
  readonly [TypeId]: TcpPool.TypeId = TypeId
  readonly endpoints = new Map<string, EndpointState>()
  readonly sockets = new Set<net.Socket>()
  /** Decoded string inputs, so that a hot loop borrowing from `"host:port"` parses it once. */
  private readonly parsed = new Map<string, Either.Either<Endpoint.Endpoint, InvalidEndpoint>>()
  /** The endpoints' states by the strings that named them (see `lookup`). */
  private readonly byInput = new Map<string, EndpointState>()
  closed = false

  constructor(
    readonly options: Resolved,
    readonly protocol: TcpPool.Protocol,
    readonly resolver: TcpPool.Resolver,
    readonly limiter: Limiter,
    readonly clock: Clock.Clock
  ) {}

  get name(): string {
    return this.options.name
  }

  decode(input: Endpoint.Input): Either.Either<Endpoint.Endpoint, InvalidEndpoint> {
    if (typeof input !== "string") return decode(input)
    let decoded = this.parsed.get(input)
    if (decoded === undefined) {
      decoded = decode(input)
      if (this.parsed.size >= 1024) this.parsed.clear()
      this.parsed.set(input, decoded)
    }
    return decoded
  }

  /**
   * The state of the endpoint a borrow names (see `enter`), or why there is none. A string input's state is kept
   * by the string, so that a hot loop borrowing from `"host:port"` finds it with one lookup; an entry whose
   * endpoint was evicted since is looked up again.
   */
  lookup(input: Endpoint.Input): EndpointState | InvalidEndpoint | PoolClosed {
    if (typeof input === "string" && !this.closed) {
      const ep = this.byInput.get(input)
      if (ep !== undefined && !ep.removed) {
        ep.lastUsed = this.clock.unsafeCurrentTimeMillis()
        return ep
      }
    }
    const decoded = this.decode(input)
    if (Either.isLeft(decoded)) return decoded.left
    const ep = this.enter(decoded.right)
    if (ep === undefined) return this.closedError
    if (typeof input === "string") {
      if (this.byInput.size >= 1024) this.byInput.clear()
      this.byInput.set(input, ep)
    }
    return ep
  }

  /**
   * The endpoint's state, made (and its pool started) on first use. Marks it used now, so that the evictor (which
   * wants it unused for `endpointIdleTimeout`) leaves it be.
   */
  enter(endpoint: Endpoint.Endpoint): EndpointState | undefined {
    if (this.closed) return undefined
    let ep = this.endpoints.get(endpoint.key)
    if (ep === undefined) {
      ep = new EndpointState(endpoint, this, Deferred.unsafeMake(FiberId.none))
      this.endpoints.set(endpoint.key, ep)
      ep.pending = this.start(ep)
    }
    ep.lastUsed = this.clock.unsafeCurrentTimeMillis()
    return ep
  }

  /**
   * Builds the endpoint's pool in a scope of its own, uninterruptibly (whoever asked first may be interrupted); a
   * pool finished after the shutdown began is closed at once.
   */
  start(ep: EndpointState): Effect.Effect<ConnectionPool.ConnectionPool<ConnectionImpl>, PoolClosed> {
    const build = Effect.flatMap(Scope.make(), (scope) => {
      ep.scope = scope
      return ConnectionPool.make(ep.poolOptions).pipe(
        Scope.extend(scope),
        Effect.orDieWith((error: InvalidConfig) => new Error(`options checked by make, yet: ${error.message}`)),
        Effect.flatMap((pool) => {
          if (this.closed) return Effect.zipRight(Scope.close(scope, Exit.void), Effect.fail(this.closedError))
          ep.pool = pool
          return Effect.as(Effect.logDebug(`endpoint ${ep.endpoint.key} added`), pool)
        }),
        Effect.annotateLogs({ pool: this.name })
      )
    })
    return Effect.suspend(() => {
      if (ep.started) return Deferred.await(ep.ready)
      ep.started = true
      return Effect.zipRight(Effect.uninterruptible(Deferred.complete(ep.ready, build)), Deferred.await(ep.ready))
    })
  }

  get closedError(): PoolClosed {
    return new PoolClosed({ pool: this.name })
  }

  /** Closes an endpoint's pool; one still being built is waited for (it is quick and uninterruptible). */
  closeEndpoint(ep: EndpointState): Effect.Effect<void> {
    if (!ep.started) return Effect.asVoid(Deferred.fail(ep.ready, this.closedError))
    return Effect.zipRight(
      Effect.exit(Deferred.await(ep.ready)),
      Effect.suspend(() => ep.scope === undefined ? Effect.void : Scope.close(ep.scope, Exit.void))
    )
  }

  poolOf(ep: EndpointState): Effect.Effect<ConnectionPool.ConnectionPool<ConnectionImpl>, PoolClosed> {
    return ep.pool !== undefined ? Effect.succeed(ep.pool) : ep.pending!
  }

  /** `f` with the lend and give-back bookkeeping and the protocol's `onAcquire` / `onRelease` around it. */
  use<X, E, R>(
    ep: EndpointState,
    conn: ConnectionImpl,
    f: (conn: Connection.Connection) => Effect.Effect<X, E, R>
  ): Effect.Effect<X, E | ConnectionFailed, R> {
    ep.lend(conn)
    const { onAcquire, onRelease } = this.protocol
    const lent = onAcquire === undefined ? f(conn) : Effect.zipRight(this.acquired(ep, conn, onAcquire), f(conn))
    const body = conn.uses > 1 ? Effect.zipRight(Effect.logDebug("connection reused", conn.id), lent) : lent
    return Effect.onExit(body, (exit) => {
      ep.giveBack(conn)
      return onRelease === undefined || !cleanly(exit) ? Effect.void : onRelease(conn)
    })
  }

  acquired(
    ep: EndpointState,
    conn: ConnectionImpl,
    onAcquire: NonNullable<TcpPool.Protocol["onAcquire"]>
  ): Effect.Effect<void, ConnectionFailed> {
    return Effect.mapError(onAcquire(conn), (lastError) => {
      conn.invalidate()
      return new ConnectionFailed({ endpoint: ep.endpoint.key, attempts: 1, lastError, phase: "handshake" })
    })
  }

  withConnection<X, E, R>(
    input: Endpoint.Input,
    f: (conn: Connection.Connection) => Effect.Effect<X, E, R>
  ): Effect.Effect<X, E | TcpPoolError, R> {
    return Effect.suspend(() => {
      const ep = this.lookup(input)
      if (!(ep instanceof EndpointState)) return Effect.fail(ep)
      // no closure bound to a name per call (a `__name` call each under tsx's keepNames)
      return (ep.pool !== undefined
        ? this.borrow(ep, ep.pool, f)
        : Effect.flatMap(ep.pending!, (pool) => this.borrow(ep, pool, f))).pipe(
          Effect.catchIf(isCoreConnectionError, ep.retyped)
        ) as Effect.Effect<X, E | TcpPoolError, R>
    })
  }

  /** `f` on a connection of the endpoint's pool, with the lend / give-back bookkeeping around it (see `use`). */
  borrow<X, E, R>(
    ep: EndpointState,
    pool: ConnectionPool.ConnectionPool<ConnectionImpl>,
    f: (conn: Connection.Connection) => Effect.Effect<X, E, R>
  ): Effect.Effect<X, E | PoolError | ConnectionFailed, R> {
    return pool.withConnection((conn: ConnectionImpl) => this.use(ep, conn, f))
  }

  exchange<X>(
    input: Endpoint.Input,
    request: string | Uint8Array,
    parse: (data: Buffer) => readonly [reply: X, consumed: number] | undefined
  ): Effect.Effect<X, TcpPoolError | SocketError> {
    const { onAcquire, onRelease } = this.protocol
    if (onAcquire !== undefined || onRelease !== undefined) {
      // the hooks are Effects around the borrow: the plain path runs them
      return this.withConnection(input, (conn) => Effect.zipRight(conn.write(request), readParsed(conn, parse)))
    }
    // made once per `exchange` call, not per run: the connection's owner does the lend / give-back bookkeeping
    const start = (conn: ConnectionImpl, done: (exit: Exit.Exit<X, SocketError>) => void) => {
      conn.startExchange(request, parse, done as (exit: Exit.Exit<unknown, SocketError>) => void)
      return conn.cancelExchange
    }
    // the borrow is built once per endpoint pool (a pool is one endpoint's), not once per run
    let lastPool: ConnectionPool.ConnectionPool<ConnectionImpl> | undefined = undefined
    let lastBorrow: Effect.Effect<unknown, unknown> = Effect.void
    const borrowOn = (ep: EndpointState, pool: ConnectionPool.ConnectionPool<ConnectionImpl>) => {
      if (pool !== lastPool) {
        lastPool = pool
        lastBorrow = Effect.catchIf(pool.withConnectionCallback(start), isCoreConnectionError, ep.retyped)
      }
      return lastBorrow
    }
    return Effect.suspend(() => {
      const ep = this.lookup(input)
      if (!(ep instanceof EndpointState)) return Effect.fail(ep)
      return (ep.pool !== undefined
        ? borrowOn(ep, ep.pool)
        : Effect.flatMap(ep.pending!, (pool) => borrowOn(ep, pool))) as Effect.Effect<X, TcpPoolError | SocketError>
    })
  }

  connection(input: Endpoint.Input): Effect.Effect<Connection.Connection, TcpPoolError, Scope.Scope> {
    return Effect.suspend(() => {
      const ep = this.lookup(input)
      if (!(ep instanceof EndpointState)) return Effect.fail(ep)
      return Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Effect.scope, (scope) =>
          restore(Effect.flatMap(this.poolOf(ep), (pool) => pool.get)).pipe(
            Effect.tap((conn) => {
              ep.lend(conn)
              return Scope.addFinalizerExit(scope, (exit) => {
                ep.giveBack(conn)
                const onRelease = this.protocol.onRelease
                return onRelease === undefined || !cleanly(exit) ? Effect.void : onRelease(conn)
              })
            }),
            Effect.tap((conn) => {
              const onAcquire = this.protocol.onAcquire
              return onAcquire === undefined ? Effect.void : restore(this.acquired(ep, conn, onAcquire))
            })
          ))
      ).pipe(Effect.catchIf(isCoreConnectionError, ep.retyped)) as Effect.Effect<
        Connection.Connection,
        TcpPoolError,
        Scope.Scope
      >
    })
  }

  /** The longest-idle connection of another endpoint is closed, making room under `maxConnections`. */
  evictIdle(except: EndpointState): Effect.Effect<void> {
    return Effect.suspend(() => {
      let victim: readonly [EndpointState, ConnectionImpl] | undefined = undefined
      for (const ep of this.endpoints.values()) {
        if (ep === except || ep.pool === undefined) continue
        for (const conn of ep.conns) {
          if (!conn.lent && conn.isOpen && (victim === undefined || conn.releasedAt < victim[1].releasedAt)) {
            victim = [ep, conn]
          }
        }
      }
      if (victim === undefined) return Effect.void
      const [ep, conn] = victim
      return Effect.zipRight(
        Effect.logDebug(`closing idle connection ${conn.id} to ${ep.endpoint.key} to make room under maxConnections`),
        ep.pool!.invalidate(conn)
      )
    })
  }

  /** Drops endpoints nobody borrowed from for `endpointIdleTimeout`, with their pools. */
  get evictor(): Effect.Effect<void> {
    const timeout = this.options.endpointIdleTimeout
    if (timeout === Infinity) return Effect.void
    const unused = (ep: EndpointState) =>
      ep.pool !== undefined && ep.lent === 0 && this.clock.unsafeCurrentTimeMillis() - ep.lastUsed >= timeout
    // the check after the pool's stats and the removal run with no yield between them: no caller slips in
    const evict = (ep: EndpointState) =>
      Effect.flatMap(ep.pool!.stats, (s) => {
        if (!unused(ep) || s.inUse + s.waiting + s.pending > 0 || this.endpoints.get(ep.endpoint.key) !== ep) {
          return Effect.void
        }
        this.endpoints.delete(ep.endpoint.key)
        ep.removed = true
        return Effect.zipRight(
          Effect.logDebug(`endpoint ${ep.endpoint.key} evicted, unused for ${timeout} ms`),
          this.closeEndpoint(ep)
        )
      })
    const pass = Effect.suspend(() =>
      Effect.forEach(Array.from(this.endpoints.values()).filter(unused), evict, { discard: true })
    )
    const interval = Math.max(1, Math.min(timeout / 2, 30_000))
    return Effect.forever(Effect.zipRight(Effect.sleep(interval), pass))
  }

  get shutdown(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.closed = true
      const all = Array.from(this.endpoints.values())
      for (const ep of all) ep.removed = true
      this.endpoints.clear()
      this.byInput.clear()
      return Effect.forEach(all, (ep) => this.closeEndpoint(ep), { discard: true, concurrency: "unbounded" })
    }).pipe(Effect.zipRight(Effect.logDebug("tcp pool shut down")), Effect.annotateLogs({ pool: this.name }))
  }

  endpointStats(ep: EndpointState): Effect.Effect<TcpPool.EndpointStats> {
    return Effect.map(ep.pool!.stats, (s) => ({
      endpoint: ep.endpoint,
      active: s.inUse,
      idle: s.idle,
      pending: s.pending,
      waiting: s.waiting,
      maxSize: s.maxSize,
      created: s.created,
      reused: s.hits,
      acquired: s.acquired,
      closed: s.destroyed,
      errors: ep.errors,
      timeouts: s.timeouts
    }))
  }

  stats(input: Endpoint.Input): Effect.Effect<Option.Option<TcpPool.EndpointStats>, InvalidEndpoint> {
    return Effect.suspend(() => {
      const decoded = this.decode(input)
      if (Either.isLeft(decoded)) return Effect.fail(decoded.left)
      const ep = this.endpoints.get(decoded.right.key)
      if (ep === undefined || ep.pool === undefined) return Effect.succeedNone
      return Effect.asSome(this.endpointStats(ep))
    })
  }

  get allStats(): Effect.Effect<TcpPool.Stats> {
    return Effect.suspend(() => {
      const ready = Array.from(this.endpoints.values()).filter((ep) => ep.pool !== undefined)
      return Effect.map(Effect.forEach(ready, (ep) => this.endpointStats(ep)), (endpoints) => {
        let connections = 0
        for (const ep of this.endpoints.values()) connections += ep.conns.size
        return {
          name: this.name,
          connections,
          maxConnections: this.options.maxConnections,
          waitingForRoom: this.limiter.waiting,
          sockets: this.sockets.size,
          endpoints
        }
      })
    })
  }

  clearEndpoint(input: Endpoint.Input): Effect.Effect<void, InvalidEndpoint> {
    return Effect.suspend(() => {
      const decoded = this.decode(input)
      if (Either.isLeft(decoded)) return Effect.fail(decoded.left)
      const ep = this.endpoints.get(decoded.right.key)
      if (ep === undefined || ep.pool === undefined) return Effect.void
      ep.generation++
      return Effect.zipRight(Effect.logDebug(`endpoint ${ep.endpoint.key} cleared`), ep.pool.drain)
    })
  }

  pipe() {
    return pipeArguments(this, arguments)
  }
}

/** @internal */
export const make = (options: TcpPool.Options = {}): Effect.Effect<TcpPool.TcpPool, InvalidConfig, Scope.Scope> =>
  Effect.gen(function*() {
    const resolved = yield* resolve(options)
    const limiter = yield* Limiter.make(resolved.maxConnections)
    const clock = yield* Effect.clock
    const pool = new TcpPoolImpl(resolved, options.protocol ?? {}, options.resolver ?? systemResolver, limiter, clock)
    yield* Effect.addFinalizer(() => pool.shutdown)
    yield* Effect.forkScoped(Effect.interruptible(pool.evictor))
    yield* Effect.logDebug("tcp pool created")
    return pool
  }).pipe(Effect.annotateLogs({ pool: options.name ?? "tcp" }))

/** @internal */
export const layer = (options?: TcpPool.Options): Layer.Layer<TcpPool.TcpPool, InvalidConfig> =>
  Layer.scoped(TcpPool.TcpPool, make(options))

/** @internal */
export const layerConfig = (
  config: Config.Config.Wrap<TcpPool.PoolConfig>,
  hooks: { readonly protocol?: TcpPool.Protocol | undefined; readonly resolver?: TcpPool.Resolver | undefined } = {}
) => Layer.scoped(TcpPool.TcpPool, Effect.flatMap(Config.unwrap(config), (c) => make({ ...c, ...hooks })))
