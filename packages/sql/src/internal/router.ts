import type { InvalidConfig } from "@connection-pool/core/PoolError"
import type * as Reactivity from "@effect/experimental/Reactivity"
import * as Client from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Metric from "effect/Metric"
import { hasProperty } from "effect/Predicate"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as SqlRouter from "../SqlRouter.js"
import { ReplicasUnavailable, WriteOnReplica } from "../SqlRouter.js"
import { SharedLookup } from "./freshness.js"
import * as lag from "./lag.js"
import { Member, statuses } from "./member.js"
import * as metrics from "./metrics.js"
import { type Resolved, resolve } from "./options.js"
import { currentRoute, currentToken, recordWrite, type Token } from "./session.js"

const noneTried: ReadonlyArray<Member> = []

type ReplicaPosition = { readonly inRecovery: boolean; readonly position: bigint | undefined }

/** A statement, run against one server's connection. */
type Run<X> = (conn: Connection) => Effect.Effect<X, SqlError>

const isPoolAcquireFailure = (e: SqlError): boolean =>
  hasProperty(e.cause, "_tag") && (e.cause._tag === "ConnectionError" || e.cause._tag === "PoolClosed")

class Router {
  private cursor = 0
  fallbacks = 0
  pinnedReads = 0
  positionLookups = 0
  replicaChecks = 0
  private readonly fallbackCounter: Metric.Metric.Counter<number>
  private readonly primaryLookup: SharedLookup<bigint>
  private readonly checks: Map<Member, SharedLookup<ReplicaPosition>>

  constructor(
    readonly options: Resolved,
    readonly primary: Member,
    readonly replicas: ReadonlyArray<Member>,
    readonly replication: SqlRouter.Replication | undefined,
    readonly history: lag.History,
    scope: Scope.Scope
  ) {
    this.fallbackCounter = metrics.fallbacks.pipe(Metric.tagged(metrics.attributes.router, options.name))
    const unknown = Effect.dieMessage("no replication positions") as Effect.Effect<never>
    const bounded = <A>(query: Effect.Effect<A, SqlError>) =>
      Effect.timeoutFail(query, {
        duration: Duration.millis(options.policy.timeout),
        onTimeout: () => new SqlError({ message: `position lookup took longer than ${options.policy.timeout} ms` })
      })
    this.primaryLookup = new SharedLookup(
      scope,
      replication === undefined ? unknown : bounded(replication.primaryPosition(primary.client)),
      () => void this.positionLookups++
    )
    this.checks = new Map(replicas.map((r) => [
      r,
      new SharedLookup(
        scope,
        replication === undefined ? unknown : bounded(replication.replicaPosition(r.client)),
        () => void this.replicaChecks++
      )
    ]))
  }

  private retryable(e: SqlError): boolean {
    return isPoolAcquireFailure(e) || this.replication?.isRetryable?.(e) === true
  }

  /** Runs on the primary; a completed statement outside a transaction is a write its fiber's reads must see. */
  write<X>(run: Run<X>): Effect.Effect<X, SqlError> {
    const primary = this.primary
    primary.writes++
    const effect = run(primary.connection)
    if (this.options.readYourWrites === false || this.replicas.length === 0) return effect
    return Effect.tap(effect, () => this.markWritten)
  }

  readonly markWritten: Effect.Effect<void> = Effect.withFiberRuntime((fiber) =>
    recordWrite(fiber, Context.get(fiber.currentDefaultServices, Clock.Clock).unsafeCurrentTimeMillis())
  )

  private upCache: ReadonlyArray<Member> = []
  private upVersion = -1

  /** The replicas that are up, recomputed only when a status changed. */
  private up(): ReadonlyArray<Member> {
    if (this.upVersion !== statuses.version) {
      this.upVersion = statuses.version
      this.upCache = this.replicas.filter((r) => r.status === "up")
    }
    return this.upCache
  }

  /** Adds the statements counted since the last flush to the metrics (per statement would cost more than routing). */
  readonly flushMetrics: Effect.Effect<void> = Effect.suspend(() =>
    Effect.forEach([this.primary, ...this.replicas], (m) => m.flushMetrics, { discard: true })
  )

  /** The position a read must see (read-your-writes), or `"primary"` when only the primary will do. */
  private readonly required: Effect.Effect<bigint | "primary" | undefined, SqlError> = Effect.flatMap(
    FiberRef.get(currentToken),
    (token): Effect.Effect<bigint | "primary" | undefined, SqlError> => {
      if (token === undefined || token.writtenAt === -Infinity || this.options.readYourWrites === false) {
        return Effect.succeed(undefined)
      }
      if (this.replication === undefined || this.options.readYourWrites === "window") {
        return Effect.map(
          Clock.currentTimeMillis,
          (now) => now - token.writtenAt < this.options.window ? "primary" as const : undefined
        )
      }
      if (token.position !== undefined) return Effect.succeed(token.position)
      const sampled = this.history.after(token.sequence)
      if (sampled !== undefined) return Effect.succeed(token.learn(sampled.position))
      // no sample since the write yet: ask the primary (one lookup serves every reader whose write came before it)
      return Effect.map(this.primaryLookup.after(token.sequence), (position) => token.learn(position))
    }
  )

  private pick(candidates: ReadonlyArray<Member>): Effect.Effect<Member> {
    if (candidates.length === 1) return Effect.succeed(candidates[0]!)
    const selection = this.options.selection
    switch (selection) {
      case "round-robin": {
        const n = this.replicas.length
        const chosen = candidates.find((c) => c.index >= this.cursor) ?? candidates[0]!
        this.cursor = (chosen.index + 1) % n
        return Effect.succeed(chosen)
      }
      case "random":
        return Effect.map(Random.nextIntBetween(0, candidates.length), (i) => candidates[i]!)
      case "least-connections": {
        let best = candidates[0]!
        for (const c of candidates) if (c.inFlight < best.inFlight) best = c
        return Effect.succeed(best)
      }
      default:
        return Effect.suspend(() => {
          const views = candidates.map((c) => ({
            index: c.index,
            name: c.name,
            inFlight: c.inFlight,
            lagMillis: c.lagMillis
          }))
          const i = selection(views)
          const chosen = candidates.find((c) => c.index === i)
          return chosen === undefined
            ? Effect.dieMessage(`replica selection returned ${String(i)}, not the index of a usable replica`)
            : Effect.succeed(chosen)
        })
    }
  }

  private unavailable(required: bigint | undefined, tried: ReadonlyArray<Member>) {
    return new ReplicasUnavailable({
      router: this.options.name,
      replicas: this.replicas.map((r) => ({
        name: r.name,
        reason: r.status !== "up"
          ? `${r.status}${r.reason === undefined ? "" : ` (${r.reason})`}`
          : tried.includes(r)
          ? "failed to connect"
          : required !== undefined
          ? "has not replayed this fiber's writes yet"
          : "unknown"
      }))
    })
  }

  /** Runs on the primary because no replica would do: counted, or a typed failure when asked. */
  private fallback<X>(run: Run<X>, required: bigint | undefined, tried: ReadonlyArray<Member>) {
    if (required !== undefined) {
      // worth asking only a replica that was close behind at its last sample; one that lags goes unasked
      const close = this.replicas.filter((r) =>
        r.status === "up" && !tried.includes(r) && r.lagMillis <= this.options.policy.interval
      )
      if (close.length > 0) return this.whenCaughtUp(run, required, close)
      if (this.replicas.some((r) => r.status === "up")) return this.pinned(run)
    }
    if (this.options.fallback === "fail") {
      const cause = this.unavailable(required, tried)
      return Effect.fail(new SqlError({ cause, message: cause.message }))
    }
    this.fallbacks++
    return Effect.zipRight(Metric.increment(this.fallbackCounter), this.onPrimary(run))
  }

  /**
   * Replicas are up but not known to have replayed this fiber's writes (their last lag sample is older): ask one
   * how far it has replayed (one round trip), and read there if it has them, else on the primary.
   */
  private whenCaughtUp<X>(run: Run<X>, required: bigint, up: ReadonlyArray<Member>): Effect.Effect<X, SqlError> {
    return Effect.flatMap(Effect.zip(this.pick(up), FiberRef.get(currentToken)), ([replica, token]) => {
      // a check asked after the reader learned its position (shared with the readers it can serve)
      return this.checks.get(replica)!.after(token?.learnedAt ?? 0).pipe(
        Effect.map(({ inRecovery, position }) => {
          if (!inRecovery || position === undefined) return false
          if (replica.position === undefined || position > replica.position) replica.position = position
          return position >= required
        }),
        Effect.orElseSucceed(() => false),
        Effect.flatMap((fresh) => {
          if (fresh) {
            return Effect.catchIf(this.onReplica(replica, run), (e) => this.retryable(e), () => this.pinned(run))
          }
          return this.pinned(run)
        })
      )
    })
  }

  private pinned<X>(run: Run<X>): Effect.Effect<X, SqlError> {
    this.pinnedReads++
    return this.onPrimary(run)
  }

  private onPrimary<X>(run: Run<X>): Effect.Effect<X, SqlError> {
    this.primary.reads++
    return run(this.primary.connection)
  }

  private onReplica<X>(replica: Member, run: Run<X>): Effect.Effect<X, SqlError> {
    return Effect.suspend(() => {
      replica.inFlight++
      replica.reads++
      return run(replica.connection).pipe(
        Effect.ensuring(Effect.sync(() => void replica.inFlight--)),
        Effect.catchAll((e) => {
          if (this.replication?.isReadOnlyViolation?.(e) === true) {
            const cause = new WriteOnReplica({ replica: replica.name, cause: e })
            return Effect.fail(new SqlError({ cause, message: cause.message }))
          }
          return Effect.fail(e)
        })
      )
    })
  }

  private usable(required: bigint | undefined, tried: ReadonlyArray<Member>): ReadonlyArray<Member> {
    if (required === undefined && tried.length === 0) return this.up()
    return this.replicas.filter((r) =>
      r.status === "up" && !tried.includes(r) &&
      (required === undefined || (r.position !== undefined && r.position >= required))
    )
  }

  /** Runs on a usable replica; one that cannot be reached is marked down and the next is tried. */
  read<X>(run: Run<X>, token: Token | undefined): Effect.Effect<X, SqlError> {
    if (token === undefined) return this.readAnywhere(run, undefined)
    return Effect.flatMap(this.required, (required) => {
      return required === "primary" ? this.pinned(run) : this.readAnywhere(run, required)
    })
  }

  /** On a usable replica that has `required`; one that cannot be reached is marked down and the next is tried. */
  private readAnywhere<X>(run: Run<X>, required: bigint | undefined): Effect.Effect<X, SqlError> {
    const attempt = (tried: ReadonlyArray<Member>): Effect.Effect<X, SqlError> => {
      const candidates = this.usable(required, tried)
      if (candidates.length === 0) return this.fallback(run, required, tried)
      return Effect.flatMap(this.pick(candidates), (replica) =>
        Effect.catchIf(this.onReplica(replica, run), (e) => this.retryable(e), (e) => {
          lag.markDown(replica, `unreachable: ${e.message}`)
          return attempt([...tried, replica])
        }))
    }
    return attempt(noneTried)
  }

  route<X>(run: Run<X>): Effect.Effect<X, SqlError> {
    return Effect.withFiberRuntime((fiber) =>
      fiber.getFiberRef(currentRoute) === "read" ? this.read(run, fiber.getFiberRef(currentToken)) : this.write(run)
    )
  }

  /** The routing `Connection`: each statement is routed when it runs, from the fiber's context. */
  readonly connection: Connection = {
    execute: (sql, params, transformRows) => this.route((c) => c.execute(sql, params, transformRows)),
    executeRaw: (sql, params) => this.route((c) => c.executeRaw(sql, params)),
    executeValues: (sql, params) => this.route((c) => c.executeValues(sql, params)),
    executeUnprepared: (sql, params, transformRows) =>
      this.route((c) => c.executeUnprepared(sql, params, transformRows)),
    executeStream: (sql, params, transformRows) =>
      Stream.unwrap(Effect.map(
        FiberRef.get(currentRoute),
        (route) =>
          Stream.unwrap(
            route === "read"
              ? Effect.map(this.streamTarget, (m) => m.connection.executeStream(sql, params, transformRows))
              : Effect.succeed(this.primary.connection.executeStream(sql, params, transformRows))
          )
      ))
  }

  /** Streams are not retried elsewhere once started, so they pick their server up front. */
  private get streamTarget(): Effect.Effect<Member, SqlError> {
    return Effect.flatMap(this.required, (required) => {
      if (required === "primary") return Effect.succeed(this.primary)
      const candidates = this.usable(required, [])
      if (candidates.length > 0) return this.pick(candidates)
      if (this.options.fallback === "fail" && required === undefined) {
        const cause = this.unavailable(required, [])
        return Effect.fail(new SqlError({ cause, message: cause.message }))
      }
      return Effect.succeed(this.primary)
    })
  }

  get stats(): Effect.Effect<SqlRouter.RouterStats> {
    return Effect.sync(() => ({
      name: this.options.name,
      servers: [this.primary, ...this.replicas].map((m) => m.stats()),
      fallbacks: this.fallbacks,
      pinnedReads: this.pinnedReads,
      positionLookups: this.positionLookups,
      replicaChecks: this.replicaChecks
    }))
  }
}

/** @internal */
export const make = (
  options: SqlRouter.Options
): Effect.Effect<SqlRouter.SqlRouter, InvalidConfig, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const resolved = yield* resolve(options)
    const primary = new Member(0, "primary", options.primary, resolved.name)
    const replicas = options.replicas.map((r, i) => new Member(i, "replica", r, resolved.name))
    const policy = resolved.policy
    const history = new lag.History(Math.min(10_000, Math.ceil((policy.maxLag * 4) / policy.interval) + 4))
    const router = new Router(resolved, primary, replicas, options.replication, history, yield* Effect.scope)
    const replication = options.replication
    if (replicas.length > 0) {
      if (replication !== undefined) {
        yield* Effect.forkScoped(lag.sampler(primary, replication, history, policy))
        for (const r of replicas) yield* Effect.forkScoped(lag.watcher(r, replication, history, policy))
      } else {
        for (const r of replicas) yield* Effect.forkScoped(lag.pinger(r, policy))
      }
    }
    yield* Effect.addFinalizer(() => router.flushMetrics)
    yield* Effect.forkScoped(
      Effect.repeat(router.flushMetrics, Schedule.spaced(Duration.millis(policy.interval)))
    )
    const sql = yield* Client.make({
      acquirer: Effect.succeed(router.connection),
      transactionAcquirer: options.primary.client.reserve,
      compiler: options.compiler,
      spanAttributes: options.spanAttributes ?? [],
      transformRows: options.transformRows
    })
    // a transaction's statements never reach the router: mark its writes once it ends
    const withTransaction = sql.withTransaction
    const client: Client.SqlClient = Object.assign(sql, {
      withTransaction: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.ensuring(withTransaction(effect), router.markWritten)
    })
    return { name: resolved.name, client, stats: router.stats }
  }).pipe(Effect.annotateLogs("router", options.name ?? "router"))
