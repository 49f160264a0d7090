import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import { pipeArguments } from "effect/Pipeable"
import { hasProperty } from "effect/Predicate"
import type * as Scope from "effect/Scope"
import * as STM from "effect/STM"
import * as TRef from "effect/TRef"
import * as ConnectionPool from "../../ConnectionPool.js"
import type * as MultiPool from "../../MultiPool.js"
import { NoHealthyServer } from "../../MultiPool.js"
import { ConnectionError, InvalidConfig, PoolClosed, PoolEmpty, type PoolError, PoolTimeout } from "../../PoolError.js"
import * as health from "./health.js"
import * as selection from "./selection.js"
import { resolve, type Resolved } from "./options.js"
import { aggregate } from "./stats.js"

/** @internal */
export const TypeId: MultiPool.TypeId = Symbol.for("@connection-pool/core/MultiPool") as MultiPool.TypeId

/** @internal */
export const isMultiPool = (u: unknown): u is MultiPool.MultiPool<unknown> => hasProperty(u, TypeId)

/** @internal */
export interface Server<A> {
  readonly index: number
  readonly name: string
  readonly pool: ConnectionPool.ConnectionPool<A>
  readonly health: TRef.TRef<health.Health>
  /** Borrows through the multi-pool in flight (waiting or holding): what least-in-use compares. */
  inUse: number
}

type Failure = PoolError | NoHealthyServer

/** How one server is asked for a connection, with what is left of the caller's deadline (none: the whole). */
type Attempt<A, X, E, R> = (server: Server<A>, remaining: number | undefined) => Effect.Effect<X, E | Failure, R>

class MultiPoolImpl<A> implements MultiPool.MultiPool<A> {
  readonly [TypeId]: MultiPool.TypeId = TypeId
  readonly name: string
  readonly servers: ReadonlyArray<string>
  private closed = false
  private readonly selector: ReturnType<typeof selection.make>
  private readonly owners = new Map<A, Server<A>>()

  constructor(readonly options: Resolved, readonly members: ReadonlyArray<Server<A>>) {
    this.name = options.name
    this.servers = members.map((s) => s.name)
    this.selector = selection.make(options.selection, members.length)
  }

  pipe() {
    return pipeArguments(this, arguments)
  }

  /** The usable servers; when none is and the policy says so, every automatic ban is lifted first. */
  private readonly candidates: Effect.Effect<ReadonlyArray<Server<A>>, NoHealthyServer> = Effect.suspend(() => {
    const healths = this.members.map((s) => s.health)
    return STM.commit(
      STM.flatMap(STM.forEach(healths, TRef.get), (hs) => {
        if (hs.some(health.usable)) return STM.succeed([hs, 0] as const)
        if (this.options.whenAllBanned === "fail") return STM.succeed([hs, 0] as const)
        return STM.map(health.unbanAll(healths), (n) => [hs.map((h) => h.marked ? h : health.initial), n] as const)
      })
    ).pipe(Effect.flatMap(([hs, lifted]) => {
      const usable = this.members.filter((_, i) => health.usable(hs[i]!))
      if (usable.length > 0) {
        return lifted > 0
          ? Effect.as(Effect.logWarning(`every server was banned: lifted all ${lifted} bans`), usable)
          : Effect.succeed(usable)
      }
      return Effect.fail(
        new NoHealthyServer({
          pool: this.name,
          servers: this.members.map((s, i) => ({
            name: s.name,
            reason: hs[i]!.marked ? "marked unhealthy" as const : "banned" as const,
            lastError: hs[i]!.lastError?.message
          }))
        })
      )
    }))
  })

  /**
   * The borrowing loop shared by every operation: pick a server, try it; on a failure that `next` accepts (a
   * failed connect), try the next usable server not tried yet, within the caller's `acquireTimeout`.
   */
  private borrow<X, E, R>(
    attempt: Attempt<A, X, E, R>,
    next: (error: E | Failure) => error is ConnectionError | PoolEmpty
  ): Effect.Effect<X, E | Failure, R> {
    return Effect.suspend(() => {
      if (this.closed) return Effect.fail(new PoolClosed({ pool: this.name }))
      return Effect.gen(this, function*() {
        const start = yield* Clock.currentTimeMillis
        const tried: Array<readonly [Server<A>, ConnectionError | PoolEmpty]> = []
        let server = yield* this.first
        for (;;) {
          const remaining = tried.length === 0
            ? undefined
            : this.options.acquireTimeout - ((yield* Clock.currentTimeMillis) - start)
          if (remaining !== undefined && remaining <= 0) return yield* this.exhausted(tried)
          const exit = yield* Effect.exit(this.counted(server, attempt(server, remaining)))
          if (Exit.isSuccess(exit)) {
            if (tried.length > 0) this.selector.failedOverTo(server.index)
            return exit.value
          }
          const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
          if (error === undefined || !next(error)) return yield* exit
          tried.push([server, error])
          const following = yield* this.following(server, tried)
          if (following === undefined) return yield* this.exhausted(tried)
          server = following
        }
      })
    })
  }

  private readonly first: Effect.Effect<Server<A>, NoHealthyServer> = Effect.flatMap(
    this.candidates,
    (usable) => Effect.map(this.selector.pick(usable), (c) => this.members[c.index]!)
  )

  /** The next usable server after `server` (in server order, wrapping round) that has not been tried. */
  private following(server: Server<A>, tried: ReadonlyArray<readonly [Server<A>, unknown]>) {
    return Effect.map(
      STM.commit(STM.forEach(this.members, (s) => TRef.get(s.health))),
      (hs) => {
        for (let k = 1; k < this.members.length; k++) {
          const s = this.members[(server.index + k) % this.members.length]!
          if (health.usable(hs[s.index]!) && !tried.some(([t]) => t === s)) return s
        }
        return undefined
      }
    )
  }

  /** Every server tried failed: one error naming each (`PoolEmpty` only when every one was merely full). */
  private exhausted(tried: ReadonlyArray<readonly [Server<A>, ConnectionError | PoolEmpty]>) {
    return Effect.flatMap(this.aggregateStats, (stats): Effect.Effect<never, PoolError> => {
      if (tried.every(([, e]) => e._tag === "PoolEmpty")) return Effect.fail(new PoolEmpty({ pool: this.name, stats }))
      const each = tried.map(([s, e]) => `${s.name}: ${e._tag === "PoolEmpty" ? "all connections in use" : e.reason}`)
      return Effect.fail(
        new ConnectionError({
          reason: `no server could give a connection (${tried.length} tried): ${each.join("; ")}`,
          cause: tried.map(([, e]) => e),
          attempts: tried.length,
          pool: this.name
        })
      )
    })
  }

  /** Counts the borrow against `server` while it waits or holds; a scoped borrow stops counting at release. */
  private counted<X, E, R>(server: Server<A>, effect: Effect.Effect<X, E, R>): Effect.Effect<X, E, R> {
    return Effect.suspend(() => {
      server.inUse++
      return Effect.ensuring(effect, Effect.sync(() => void server.inUse--))
    })
  }

  /** Bounds a failover attempt's wait by what is left of the caller's deadline. */
  private bounded<X, E, R>(
    server: Server<A>,
    effect: Effect.Effect<X, E, R>,
    remaining: number | undefined
  ): Effect.Effect<X, E | PoolTimeout, R> {
    if (remaining === undefined) return effect
    return Effect.flatMap(Effect.timeoutOption(effect, Duration.millis(remaining)), (got) =>
      got._tag === "Some" ? Effect.succeed(got.value) : Effect.flatMap(this.aggregateStats, (stats) => {
        const timeout = Duration.millis(this.options.acquireTimeout)
        return Effect.fail(
          new PoolTimeout({
            pool: `${this.name} (at ${server.name})`,
            phase: "waiting",
            limit: "acquireTimeout",
            timeout,
            waited: timeout,
            waitingMs: this.options.acquireTimeout,
            connectingMs: 0,
            validatingMs: 0,
            stats
          })
        )
      }))
  }

  /** A scoped borrow from `server`; the connection is remembered (for `invalidate`) until released. */
  private scopedFrom(kind: "get" | "tryGet") {
    return (server: Server<A>, remaining: number | undefined): Effect.Effect<A, Failure, Scope.Scope> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.tap(restore(this.bounded(server, server.pool[kind], remaining)), (conn) => {
          server.inUse++ // the attempt's own count ends with it; this one lasts until release
          this.owners.set(conn, server)
          return Effect.addFinalizer(() =>
            Effect.sync(() => {
              server.inUse--
              if (this.owners.get(conn) === server) this.owners.delete(conn)
            })
          )
        })
      )
  }

  get get(): Effect.Effect<A, Failure, Scope.Scope> {
    return this.borrow<A, never, Scope.Scope>(this.scopedFrom("get"), isConnectionError)
  }

  get tryGet(): Effect.Effect<A, Failure, Scope.Scope> {
    return this.borrow<A, never, Scope.Scope>(this.scopedFrom("tryGet"), isConnectionErrorOrEmpty)
  }

  withConnection<X, E, R>(f: (conn: A) => Effect.Effect<X, E, R>): Effect.Effect<X, E | Failure, R> {
    return Effect.scoped(Effect.flatMap(this.get, f))
  }

  withConnectionTry<X, E, R>(f: (conn: A) => Effect.Effect<X, E, R>): Effect.Effect<X, E | Failure, R> {
    return Effect.scoped(Effect.flatMap(this.tryGet, f))
  }

  withConnectionCallback<X, E>(
    start: (conn: A, done: (exit: Exit.Exit<X, E>) => void) => Effect.Effect<void> | void
  ): Effect.Effect<X, E | Failure> {
    // The first attempt takes the server pool's own fast path (whoever releases a connection starts `start`).
    // A failover attempt borrows with what is left of the deadline and runs `start` itself. `started` tells a
    // ConnectionError from the pool (try the next server) from one that `start` reported (the caller's).
    let started = false
    const wrapped = (conn: A, done: (exit: Exit.Exit<X, E>) => void) => {
      started = true
      return start(conn, done)
    }
    const attempt: Attempt<A, X, E, never> = (server, remaining) => {
      started = false
      if (remaining === undefined) return server.pool.withConnectionCallback(wrapped)
      return Effect.scoped(Effect.flatMap(
        this.bounded(server, server.pool.get, remaining),
        (conn) => Effect.async<X, E>((resume) => wrapped(conn, resume) ?? undefined)
      ))
    }
    return this.borrow(attempt, (e): e is ConnectionError => !started && isConnectionError(e))
  }

  invalidate(conn: A): Effect.Effect<void> {
    return Effect.suspend(() => {
      const server = this.owners.get(conn)
      return server === undefined ? Effect.void : server.pool.invalidate(conn)
    })
  }

  private server(index: number): Effect.Effect<Server<A>, InvalidConfig> {
    const server = Number.isInteger(index) ? this.members[index] : undefined
    return server === undefined
      ? Effect.fail(
        new InvalidConfig({
          option: "server",
          value: index,
          reason: `no server at index ${index} (0..${this.members.length - 1})`
        })
      )
      : Effect.succeed(server)
  }

  markUnhealthy(index: number): Effect.Effect<void, InvalidConfig> {
    return Effect.flatMap(this.server(index), (s) =>
      Effect.zipRight(health.mark(s.health, false), Effect.logInfo(`server "${s.name}" marked unhealthy`)))
  }

  markHealthy(index: number): Effect.Effect<void, InvalidConfig> {
    return Effect.flatMap(this.server(index), (s) =>
      Effect.zipRight(health.mark(s.health, true), Effect.logInfo(`server "${s.name}" marked healthy`)))
  }

  private get aggregateStats() {
    return Effect.map(Effect.forEach(this.members, (s) => s.pool.stats), (all) => aggregate(this.name, all))
  }

  get stats(): Effect.Effect<MultiPool.MultiStats> {
    return Effect.gen(this, function*() {
      const perServer: Array<MultiPool.ServerStats> = []
      for (const s of this.members) {
        const h = yield* TRef.get(s.health)
        perServer.push({
          index: s.index,
          name: s.name,
          healthy: health.usable(h),
          banned: h.bannedUntil !== undefined,
          marked: h.marked,
          consecutiveFailures: h.failures,
          lastError: h.lastError?.message,
          stats: yield* s.pool.stats
        })
      }
      return {
        name: this.name,
        servers: perServer.length,
        healthyServers: perServer.filter((s) => s.healthy).length,
        aggregate: aggregate(this.name, perServer.map((s) => s.stats)),
        perServer
      }
    })
  }

  shutdown(timeout?: Duration.DurationInput): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.closed = true
      return Effect.forEach(this.members, (s) => s.pool.shutdown(timeout), { concurrency: "unbounded", discard: true })
    })
  }
}

const isConnectionError = (e: unknown): e is ConnectionError => hasProperty(e, "_tag") && e._tag === "ConnectionError"

const isConnectionErrorOrEmpty = (e: unknown): e is ConnectionError | PoolEmpty =>
  hasProperty(e, "_tag") && (e._tag === "ConnectionError" || e._tag === "PoolEmpty")

const renamed = (index: number, name: string) => (e: InvalidConfig) =>
  new InvalidConfig({ option: `servers[${index}] (${name}).${e.option}`, value: e.value, reason: e.reason })

/** @internal */
export const make = <A, R>(
  options: MultiPool.Options<A, R>
): Effect.Effect<MultiPool.MultiPool<A>, InvalidConfig, Scope.Scope | R> =>
  Effect.gen(function*() {
    const resolved = yield* resolve(options)
    const members: Array<Server<A>> = []
    const built = Effect.forEach(options.servers, (server, index) =>
      Effect.gen(function*() {
        const { driver, name, ...own } = server
        const state = yield* TRef.make(health.initial)
        const pool = yield* ConnectionPool.make({
          ...resolved.shared,
          minSize: resolved.minSizePerServer,
          maxSize: resolved.maxSizePerServer,
          ...stripUndefined(own),
          name: `${resolved.name}/${name}`,
          driver: health.watch(driver, state, resolved.ban, name)
        }).pipe(Effect.mapError(renamed(index, name)))
        members.push({ index, name, pool, health: state, inUse: 0 })
        const timeout = Duration.millis(resolved.probeTimeout(server))
        yield* Effect.forkScoped(
          Effect.interruptible(health.prober(state, resolved.ban, name, health.probe(driver, name, timeout)))
        )
      }), { discard: true })
    // a bad option of a later server must not leave the earlier ones' pools running until the scope closes
    yield* Effect.tapError(built, () => Effect.forEach(members, (s) => s.pool.shutdown(0), { discard: true }))
    const multi = new MultiPoolImpl<A>(resolved, members)
    yield* Effect.addFinalizer(() => multi.shutdown())
    yield* Effect.logDebug(`multi-pool created over ${members.length} servers`)
    return multi as MultiPool.MultiPool<A>
  }).pipe(Effect.annotateLogs("pool", options.name ?? "multi"))

const stripUndefined = <O extends object>(o: O): Partial<O> =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<O>

/** @internal */
export const layer = <I, A, R>(tag: Context.Tag<I, MultiPool.MultiPool<A>>, options: MultiPool.Options<A, R>) =>
  Layer.scoped(tag, make(options))
