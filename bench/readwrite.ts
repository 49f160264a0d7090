/**
 * Read/write splitting: 200 fibers, in one run against a primary and two streaming replicas of the bench's own
 * (the pg package's test harness), 10 connections per server:
 *
 * - `PgClient` on one replica: `sql\`SELECT 1\`` through a plain `PgPool.layer` on that replica;
 * - the router on that one replica: `SqlRouter.withRead(sql\`SELECT 1\`)` through `PgRouter.layer`;
 * - the router on both replicas, the same reads;
 * - the router with read-your-writes: each caller inserts a row, then reads 4 times.
 *
 * Reported per client: queries/s (median of the rounds), latency p50/p99 of one statement, and each server's share
 * of the statements. Targets: the router on one replica at ≥ 0.95× the plain `PgClient` on it; read-your-writes
 * costing no round trip for a read whose replica is known to be caught up (counted: position round trips).
 */
import { SqlRouter } from "@connection-pool/sql"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Redacted } from "effect"
import { PgPool, PgRouter } from "../packages/pg/src/index.js"
import { type ReplicaSet, startReplicaSet } from "../packages/pg/test/harness/ReplicaSet.js"
import type { Target } from "./common.js"
import { commitLine, gc, machineLine, median, ms, positive, printSummary, progress, rate, rotate, scoped, times } from "./common.js"

const CALLERS = 200
const CONNECTIONS = 10
const READS_PER_WRITE = 4

const PLAIN = "PgClient on replica 1"
const ROUTER_ONE = "router, 1 replica"
const ROUTER_TWO = "router, 2 replicas"
const ROUTER_RYW = "router, read-your-writes (1 write + 4 reads)"

interface Result {
  readonly qps: number
  readonly p50: number
  readonly p99: number
  /** Statements per server name. */
  readonly share: Record<string, number>
  /** Round trips for read-your-writes: primary position lookups, replica replay checks. */
  readonly lookups: number
  readonly checks: number
  readonly writes: number
}

type Env = SqlClient.SqlClient

interface Subject {
  readonly name: string
  readonly layer: (rs: ReplicaSet) => Layer.Layer<SqlClient.SqlClient | SqlRouter.SqlRouter, unknown>
    | Layer.Layer<SqlClient.SqlClient, unknown>
  /** One caller's iteration; returns how many statements it ran. */
  readonly step: Effect.Effect<number, unknown, Env>
}

const select = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`)
const read = Effect.as(SqlRouter.withRead(select), 1)


const routerLayer = (rs: ReplicaSet, replicas: number, extra: Partial<PgRouter.PgRouterConfig> = {}) =>
  PgRouter.layer({
    primary: { url: Redacted.make(rs.primary.url) },
    replicas: rs.replicas.slice(0, replicas).map((r) => ({ url: Redacted.make(r.url) })),
    maxSize: CONNECTIONS,
    ...extra
  })

const subjects: ReadonlyArray<Subject> = [
  {
    name: PLAIN,
    layer: (rs) => PgPool.layer({ url: Redacted.make(rs.replicas[0]!.url), maxSize: CONNECTIONS }),
    step: Effect.as(select, 1)
  },
  { name: ROUTER_ONE, layer: (rs) => routerLayer(rs, 1), step: read },
  { name: ROUTER_TWO, layer: (rs) => routerLayer(rs, 2), step: read },
  {
    name: ROUTER_RYW,
    layer: (rs) => routerLayer(rs, 2),
    step: Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`INSERT INTO rw (x) VALUES (1)`
      for (let i = 0; i < READS_PER_WRITE; i++) yield* SqlRouter.withRead(select)
      return 1 + READS_PER_WRITE
    })
  }
]

const noStats: SqlRouter.RouterStats = {
  name: "plain",
  servers: [],
  fallbacks: 0,
  pinnedReads: 0,
  positionLookups: 0,
  replicaChecks: 0
}

const measure = async (rs: ReplicaSet, subject: Subject, seconds: number): Promise<Result> => {
  const layer = subject.layer(rs) as Layer.Layer<SqlClient.SqlClient, unknown>
  const { close, value: context } = await scoped(Layer.build(layer))
  try {
    const latencies: Array<number> = []
    let statements = 0
    let counting = false
    let stop = false
    const caller = Effect.whileLoop({
      while: () => !stop,
      body: () =>
        Effect.suspend(() => {
          const start = performance.now()
          return Effect.map(subject.step, (n) => [n, start] as const)
        }),
      step: ([n, start]) => {
        if (!counting) return
        statements += n
        latencies.push((performance.now() - start) / n)
      }
    })
    const run = Effect.forEach(Array.from({ length: CALLERS }), () => caller, {
      concurrency: "unbounded",
      discard: true
    })
    const fiber = Effect.runFork(Effect.provide(run, context))
    await new Promise((r) => setTimeout(r, 300)) // warm-up: connections open, lag measured
    const stats = Effect.flatMap(
      Effect.serviceOption(SqlRouter.SqlRouter),
      (r) => r._tag === "Some" ? r.value.stats : Effect.succeed(noStats)
    )
    const before = await Effect.runPromise(Effect.provide(stats, context))
    gc()
    counting = true
    const began = performance.now()
    await new Promise((r) => setTimeout(r, seconds * 1000))
    counting = false
    const elapsed = (performance.now() - began) / 1000
    const after = await Effect.runPromise(Effect.provide(stats, context))
    stop = true
    await Effect.runPromise(Effect.fromFiber(fiber)).catch(() => {})
    latencies.sort((a, b) => a - b)
    const share: Record<string, number> = after.servers.length === 0 ? { replica1: statements } : {}
    for (const s of after.servers) {
      const was = before.servers.find((b) => b.name === s.name)
      share[s.name] = s.reads + s.writes - (was === undefined ? 0 : was.reads + was.writes)
    }
    return {
      qps: statements / elapsed,
      p50: latencies[Math.floor(latencies.length * 0.5)] ?? NaN,
      p99: latencies[Math.floor(latencies.length * 0.99)] ?? NaN,
      share,
      lookups: after.positionLookups - before.positionLookups,
      checks: after.replicaChecks - before.replicaChecks,
      writes: share["primary"] ?? 0
    }
  } finally {
    await close()
  }
}

const perWrite = (r: Result): string =>
  `${(r.lookups / r.writes).toFixed(2)} primary lookups + ${(r.checks / r.writes).toFixed(2)} replica checks per write`

const shareLine = (share: Record<string, number>): string => {
  const total = Object.values(share).reduce((a, b) => a + b, 0)
  return Object.entries(share).map(([k, v]) => `${k} ${total === 0 ? 0 : Math.round((v / total) * 100)}%`).join(", ")
}

export const main = async (): Promise<void> => {
  const began = performance.now()
  const seconds = positive("BENCH_SECONDS", process.env.BENCH_SECONDS, 3, false)
  const rounds = positive("BENCH_ROUNDS", process.env.BENCH_ROUNDS, 3, true)
  progress("readwrite: starting a primary and two streaming replicas")
  const rs = await startReplicaSet({ name: "bench_rw" })
  try {
    await rs.primary.query("CREATE TABLE rw (x int)")
    await rs.caughtUp()
    const results = new Map<string, Array<Result>>(subjects.map((s) => [s.name, []]))
    for (let r = 0; r < rounds; r++) {
      for (const subject of rotate(subjects, r)) {
        progress(`readwrite: round ${r + 1}/${rounds}: ${subject.name}`)
        results.get(subject.name)!.push(await measure(rs, subject, seconds))
      }
    }
    const med = (name: string, f: (r: Result) => number) => median(results.get(name)!.map(f))
    const plain = med(PLAIN, (r) => r.qps)
    console.log(`# readwrite: ${CALLERS} fibers, ${CONNECTIONS} connections per server, SELECT 1`)
    console.log(machineLine())
    console.log(commitLine())
    console.log(`- ${rounds} rounds of ${seconds} s per client, medians; a shared, noisy 2-core machine`)
    console.log("")
    console.log("| client | queries/s | vs plain | p50 | p99 | share per server | read-your-writes round trips |")
    console.log("|---|---|---|---|---|---|---|")
    for (const s of subjects) {
      const last = results.get(s.name)!.at(-1)!
      console.log(
        `| ${s.name} | ${rate(med(s.name, (r) => r.qps))} | ${times(med(s.name, (r) => r.qps) / plain, 2)} | ` +
          `${ms(med(s.name, (r) => r.p50))} | ${ms(med(s.name, (r) => r.p99))} | ${shareLine(last.share)} | ` +
          `${s.name === ROUTER_RYW ? perWrite(last) : "—"} |`
      )
    }
    console.log("")
    const ratio = med(ROUTER_ONE, (r) => r.qps) / plain
    const ryw = results.get(ROUTER_RYW)!.at(-1)!
    const reads = Object.entries(ryw.share).filter(([k]) => k !== "primary").reduce((n, [, v]) => n + v, 0)
    const targets: Array<Target> = [
      { name: "router on 1 replica ≥ 0.95× plain PgClient on it", value: times(ratio, 2), met: ratio >= 0.95 },
      {
        name: "read-your-writes: reads on replicas, ≤ 1 extra round trip per write",
        value: `${shareLine(ryw.share)}; ${perWrite(ryw)}`,
        met: reads > 0 && ryw.lookups + ryw.checks <= ryw.writes
      }
    ]
    printSummary(began, [], "Checks passed.", targets)
  } finally {
    await rs.destroy()
  }
}
