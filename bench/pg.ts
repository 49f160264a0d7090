/**
 * PostgreSQL: `SELECT 1` with 10 connections and 200 concurrent callers, each client for a fixed time, in one run
 * against one server:
 *
 * - raw `pg.Pool` (`pool.query`), 200 async loops;
 * - @effect/sql-pg's `PgClient` on its own pg-pool, and `PgClient` on our pool (`PgPool.layer`), 200 fibers each
 *   looping `sql\`SELECT 1\``;
 * - our pool with a raw `pg.Client` (`PgPool.withConnection`), and effect's `Pool.make` over `pg.Client`, 200 fibers;
 * - the floor of a fair pool on effect's runtime for that shape: a plain-state FIFO handoff of `pg.Client`s, one
 *   `Effect.async` per borrow that waits, no pool feature (what the raw row pays for on top of it is the pool).
 *
 * Every caller loops until a shared deadline. Reported: queries/s, latency percentiles (from asking for a connection
 * to having the result), and fairness (the fewest / most queries any one caller completed). The server is a
 * throwaway cluster of the bench's own (the pg package's test harness), or `PG_URL`.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Context, Data, Effect, Layer, Pool, Redacted } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import pg from "pg"
import { PgPool } from "../packages/pg/src/index.js"
import { startCluster } from "../packages/pg/test/harness/PgCluster.js"
import type { Fairness, Target } from "./common.js"
import {
  fairnessOf,
  gc,
  commitLine,
  machineLine,
  median,
  ms,
  nearestRank,
  positive,
  printSummary,
  progress,
  rate,
  rotate,
  scoped,
  times,
  versionOf
} from "./common.js"

const CONNECTIONS = 10
const CALLERS = 200
const DEFAULT_SECONDS = 5
const WARMUP_MS = 500
const DEFAULT_ROUNDS = 3
/** The same text for every client: no parameters and no statement name, so all of them use the simple protocol. */
const TEXT = "SELECT 1"
/** How long a closed client's sessions may take to leave `pg_stat_activity` (the backends exit asynchronously). */
const SESSION_EXIT_MS = 3000

const PG_POOL = "pg.Pool (pool.query)"
const SQL_PG_POOL = "PgClient on pg-pool"
const SQL_OURS = "PgClient on PgPool"
const RAW_OURS = "PgPool withConnection (raw pg.Client)"
const SCOPED_OURS = "PgPool get, scoped (raw pg.Client)"
const EFFECT_POOL = "effect Pool.make (raw pg.Client)"
const FLOOR = "floor: Effect.async handoff, plain state (raw pg.Client)"

// -----------------------------------------------------------------------------------------------------------------
// Counting
// -----------------------------------------------------------------------------------------------------------------

/** Latencies in milliseconds, one per counted query; grows as needed. */
class Latencies {
  private values = new Float64Array(1 << 16)
  n = 0
  push(x: number): void {
    if (this.n === this.values.length) {
      const grown = new Float64Array(this.n * 2)
      grown.set(this.values)
      this.values = grown
    }
    this.values[this.n++] = x
  }
  get all(): Float64Array {
    return this.values.subarray(0, this.n)
  }
}

/** One run's shared state: the deadline, and what each caller completed before it. */
class Tally {
  stop = false
  wrong = 0
  readonly counts: Uint32Array
  readonly latencies = new Latencies()
  constructor(callers: number, readonly deadline: number) {
    this.counts = new Uint32Array(callers)
  }
  /** After each query of caller `i`; the first caller to see the deadline pass stops them all, uncounted. */
  record(i: number, start: number, rows: ReadonlyArray<unknown>): void {
    const now = performance.now()
    if (now >= this.deadline) {
      this.stop = true
      return
    }
    this.counts[i]++
    this.latencies.push(now - start)
    if (!(rows.length === 1 && (rows[0] as Record<string, unknown>)["?column?"] === 1)) this.wrong++
  }
}

// -----------------------------------------------------------------------------------------------------------------
// Subjects: one per client, each opened per run and closed after it
// -----------------------------------------------------------------------------------------------------------------

interface Client {
  /** `tally.counts.length` concurrent callers, each looping `SELECT 1` until `tally.deadline`. */
  readonly run: (tally: Tally) => Promise<void>
  readonly close: () => Promise<void>
}

interface Subject {
  readonly name: string
  /** The `application_name` of its sessions, to find them in `pg_stat_activity`. */
  readonly applicationName: string
  readonly open: (url: string) => Promise<Client>
}

/** The Effect clients: `callers` fibers, each looping `query` with `context` provided once. */
const effectClient = <R>(
  context: Context.Context<R>,
  query: Effect.Effect<ReadonlyArray<unknown>, unknown, R>,
  close: () => Promise<void>
): Client => ({
  run: (tally) => {
    const caller = (i: number) =>
      Effect.suspend(() => {
        let start = 0
        return Effect.whileLoop({
          while: () => !tally.stop,
          body: () =>
            Effect.suspend(() => {
              start = performance.now()
              return query
            }),
          step: (rows) => tally.record(i, start, rows)
        })
      })
    const callers = Effect.forEach(Array.from({ length: tally.counts.length }, (_, i) => i), caller, {
      concurrency: "unbounded",
      discard: true
    })
    return Effect.runPromise(Effect.provide(callers, context))
  },
  close
})

const pgPoolSubject = (applicationName: string): Subject => ({
  name: PG_POOL,
  applicationName,
  open: async (url) => {
    const pool = new pg.Pool({ connectionString: url, max: CONNECTIONS, application_name: applicationName })
    pool.on("error", () => {})
    return {
      run: async (tally) => {
        const caller = async (i: number) => {
          try {
            while (!tally.stop) {
              const start = performance.now()
              const result = await pool.query(TEXT)
              tally.record(i, start, result.rows)
            }
          } catch (e) {
            tally.stop = true // as a failed fiber interrupts its siblings in the Effect clients
            throw e
          }
        }
        await Promise.all(Array.from({ length: tally.counts.length }, (_, i) => caller(i)))
      },
      close: () => pool.end()
    }
  }
})

/** `sql\`SELECT 1\``, a new statement each time, as application code writes it. */
const sqlSelect: Effect.Effect<ReadonlyArray<unknown>, unknown, SqlClient.SqlClient> = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql`SELECT 1`
)

const layerSubject = <R>(
  name: string,
  applicationName: string,
  layer: (url: Redacted.Redacted) => Layer.Layer<R, unknown>,
  query: Effect.Effect<ReadonlyArray<unknown>, unknown, R>
): Subject => ({
  name,
  applicationName,
  open: async (url) => {
    const { close, value: context } = await scoped(Layer.build(layer(Redacted.make(url))))
    return effectClient(context, query, close)
  }
})

const sqlPgSubject = (applicationName: string): Subject =>
  layerSubject(
    SQL_PG_POOL,
    applicationName,
    (url) => PgClient.layer({ url, maxConnections: CONNECTIONS, applicationName }),
    sqlSelect
  )

const sqlOursSubject = (applicationName: string): Subject =>
  layerSubject(
    SQL_OURS,
    applicationName,
    (url) => PgPool.layer({ url, maxSize: CONNECTIONS, applicationName }),
    sqlSelect
  )

const rawOursSubject = (applicationName: string): Subject =>
  layerSubject(
    RAW_OURS,
    applicationName,
    (url) => PgPool.layer({ url, maxSize: CONNECTIONS, applicationName }),
    Effect.map(PgPool.withConnection((client) => PgPool.query(client, TEXT)), (result) => result.rows)
  )

/** Like for like with `Pool.make`: the scoped borrow, `Effect.scoped(PgPool.get)`. */
const scopedOursSubject = (applicationName: string): Subject =>
  layerSubject(
    SCOPED_OURS,
    applicationName,
    (url) => PgPool.layer({ url, maxSize: CONNECTIONS, applicationName }),
    Effect.map(
      Effect.scoped(Effect.flatMap(PgPool.PgPool.get, (client) => PgPool.query(client, TEXT))),
      (result) => result.rows
    )
  )

class ConnectFailed extends Data.TaggedError("ConnectFailed")<{ readonly cause: unknown }> {}

const effectPoolSubject = (applicationName: string): Subject => ({
  name: EFFECT_POOL,
  applicationName,
  open: async (url) => {
    const connect = Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const client = new pg.Client({ connectionString: url, application_name: applicationName })
          client.on("error", () => {})
          await client.connect()
          return client
        },
        catch: (cause) => new ConnectFailed({ cause })
      }),
      (client) => Effect.promise(() => client.end().catch(() => {}))
    )
    const { close, value: pool } = await scoped(Pool.make({ acquire: connect, size: CONNECTIONS }))
    const query = Effect.scoped(Effect.flatMap(Pool.get(pool), (client) => PgPool.query(client, TEXT)))
    return effectClient(Context.empty(), Effect.map(query, (result) => result.rows), close)
  }
})

/**
 * The floor of a fair pool on effect's runtime for the raw shape, not a pool: ten `pg.Client`s, a strict-FIFO
 * handoff in plain fields, one `Effect.async` per borrow that waits, and `PgPool.query` on the client it got. No
 * timeouts, no connects, no metrics, no interruption safety (an interrupted caller would leak its client). What
 * `PgPool withConnection` pays for on top of it is the pool.
 */
const floorSubject = (applicationName: string): Subject => ({
  name: FLOOR,
  applicationName,
  open: async (url) => {
    const clients = await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
      const client = new pg.Client({ connectionString: url, application_name: applicationName })
      client.on("error", () => {})
      await client.connect()
      return client
    }))
    const idle = [...clients]
    const queue: Array<(client: Effect.Effect<pg.Client>) => void> = []
    let head = 0
    const acquire = Effect.async<pg.Client>((resume) => {
      const client = head === queue.length ? idle.pop() : undefined
      if (client !== undefined) resume(Effect.succeed(client))
      else queue.push(resume)
    })
    const release = (client: pg.Client) =>
      Effect.sync(() => {
        if (head < queue.length) {
          const next = queue[head]
          queue[head++] = undefined as never
          if (head === queue.length) queue.length = head = 0
          next(Effect.succeed(client))
        } else idle.push(client)
      })
    const query = Effect.flatMap(
      acquire,
      (client) => Effect.flatMap(Effect.exit(PgPool.query(client, TEXT)), (exit) => Effect.zipRight(release(client), exit))
    )
    return effectClient(Context.empty(), Effect.map(query, (result) => result.rows), async () => {
      await Promise.all(clients.map((client) => client.end().catch(() => {})))
    })
  }
})

const makeSubjects = (): ReadonlyArray<Subject> => {
  // the pid keeps two benches on one PG_URL from counting each other's sessions
  const app = (name: string) => `bench-${name}-${process.pid}`
  return [
    pgPoolSubject(app("pg-pool")),
    sqlPgSubject(app("sql-pg")),
    sqlOursSubject(app("sql-ours")),
    rawOursSubject(app("raw-ours")),
    scopedOursSubject(app("scoped-ours")),
    effectPoolSubject(app("effect-pool")),
    floorSubject(app("floor"))
  ]
}

// -----------------------------------------------------------------------------------------------------------------
// The server
// -----------------------------------------------------------------------------------------------------------------

type Query = <R extends pg.QueryResultRow>(sql: string, params?: ReadonlyArray<unknown>) => Promise<Array<R>>

interface Server {
  readonly url: string
  readonly description: string
  /** The postmaster, to count its backends' CPU time; unknown for `PG_URL`. */
  readonly pid: () => number | undefined
  /** One statement on a short-lived connection of its own. */
  readonly query: Query
  readonly destroy: () => Promise<void>
}

const queryOnce = (url: string): Query => async (sql, params) => {
  const client = new pg.Client({ connectionString: url })
  client.on("error", () => {})
  try {
    await client.connect()
    return (await client.query(sql, params === undefined ? undefined : [...params])).rows
  } finally {
    await client.end().catch(() => {})
  }
}

/** `PG_URL` if set, else a throwaway cluster of our own (about 1.5 s to start). */
const openServer = async (): Promise<Server> => {
  const fromEnv = process.env.PG_URL
  if (fromEnv !== undefined && fromEnv !== "") {
    return {
      url: fromEnv,
      description: "PG_URL",
      pid: () => undefined,
      query: queryOnce(fromEnv),
      destroy: async () => {}
    }
  }
  const cluster = await startCluster({ name: "bench" })
  return {
    url: cluster.url,
    description: `a throwaway cluster of its own on 127.0.0.1:${cluster.port} (fsync off, max_connections 100)`,
    pid: () => cluster.pid,
    query: (sql, params) => cluster.query(sql, params),
    destroy: () => cluster.destroy()
  }
}

const sessions = async (server: Server, applicationName: string): Promise<number> => {
  const rows = await server.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1",
    [applicationName]
  )
  return rows[0]?.n ?? 0
}

/** Polls until the subject's sessions are gone, or `SESSION_EXIT_MS` passes; returns how many are left. */
const sessionsLeft = async (server: Server, applicationName: string): Promise<number> => {
  const deadline = performance.now() + SESSION_EXIT_MS
  for (;;) {
    const n = await sessions(server, applicationName)
    if (n === 0 || performance.now() >= deadline) return n
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

// -----------------------------------------------------------------------------------------------------------------
// CPU: where the time went, and whether something else on the machine took some of it
// -----------------------------------------------------------------------------------------------------------------

/** Cumulative CPU seconds: the whole machine's busy time, this process, and the server's processes. */
interface CpuSample {
  readonly machine: number | undefined
  readonly bench: number
  readonly server: number | undefined
}

/** Shares of one core, in percent, over a run. `other` is the machine's busy time that was neither. */
interface CpuShares {
  readonly bench: number
  readonly server: number | undefined
  readonly other: number | undefined
}

const CLOCK_TICKS = 100 // USER_HZ, 100 on every Linux architecture Node runs on

const readProc = (file: string): string | undefined => {
  try {
    return fs.readFileSync(file, "utf8")
  } catch {
    return undefined
  }
}

/** The fields of `/proc/<pid>/stat` after the command name (which may hold spaces): state is [0], ppid [1]. */
const procStat = (pid: number | string): ReadonlyArray<string> | undefined => {
  const stat = readProc(`/proc/${pid}/stat`)
  return stat === undefined ? undefined : stat.slice(stat.lastIndexOf(")") + 2).split(" ")
}

const machineBusy = (): number | undefined => {
  const line = readProc("/proc/stat")?.split("\n", 1)[0]
  if (line === undefined || !line.startsWith("cpu ")) return undefined
  const [user, nice, system, , , irq, softirq, steal] = line.slice(4).trim().split(/\s+/).map(Number)
  return (user + nice + system + irq + softirq + (steal ?? 0)) / CLOCK_TICKS
}

/**
 * The postmaster's time, its reaped children's, and its live children's (the backends). Backends live through a
 * measured run (the pool opened them in the warm-up), so the difference over the run is theirs.
 */
const serverCpu = (postmaster: number | undefined): number | undefined => {
  if (postmaster === undefined) return undefined
  const own = procStat(postmaster)
  if (own === undefined) return undefined
  // utime, stime, cutime, cstime are fields 14 to 17 of stat, [11] to [14] here
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14])
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const child = procStat(entry)
    if (child !== undefined && Number(child[1]) === postmaster) ticks += Number(child[11]) + Number(child[12])
  }
  return ticks / CLOCK_TICKS
}

const cpuSample = (server: Server): CpuSample => {
  const { system, user } = process.cpuUsage()
  return { machine: machineBusy(), bench: (user + system) / 1e6, server: serverCpu(server.pid()) }
}

const cpuShares = (before: CpuSample, after: CpuSample, seconds: number): CpuShares => {
  const share = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined ? undefined : ((b - a) / seconds) * 100
  const bench = share(before.bench, after.bench)!
  const server = share(before.server, after.server)
  const machine = share(before.machine, after.machine)
  return {
    bench,
    server,
    other: machine === undefined ? undefined : Math.max(0, machine - bench - (server ?? 0))
  }
}

// -----------------------------------------------------------------------------------------------------------------
// Measuring
// -----------------------------------------------------------------------------------------------------------------

interface RunResult {
  readonly rate: number
  readonly counts: Uint32Array
  readonly latencies: Float64Array
  readonly cpu: CpuShares
}

interface SubjectResults {
  readonly runs: Array<RunResult>
  failed: string | undefined
}

const problems: Array<string> = []

const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/**
 * Opens the client, warms it up, measures it for `ms`, closes it, and checks that its sessions are gone. A
 * failure is recorded, never thrown: the other clients still run.
 */
const measure = async (server: Server, subject: Subject, ms: number, round: number): Promise<RunResult | string> => {
  const problem = (what: string) => problems.push(`${subject.name}, round ${round}: ${what}`)
  let client: Client | undefined
  try {
    client = await subject.open(server.url)
    const warmUp = new Tally(CALLERS, performance.now() + WARMUP_MS)
    await client.run(warmUp)
    gc()
    const cpuBefore = cpuSample(server)
    const start = performance.now()
    const tally = new Tally(CALLERS, start + ms)
    await client.run(tally)
    const cpu = cpuShares(cpuBefore, cpuSample(server), (performance.now() - start) / 1000)
    const open = await sessions(server, subject.applicationName)
    if (open > CONNECTIONS) problem(`${open} sessions open at the end of the run`)
    if (tally.wrong + warmUp.wrong > 0) problem(`${tally.wrong + warmUp.wrong} queries did not return 1`)
    let total = 0
    for (const c of tally.counts) total += c
    return { rate: (total / ms) * 1000, counts: tally.counts, latencies: tally.latencies.all, cpu }
  } catch (e) {
    return errorMessage(e)
  } finally {
    if (client !== undefined) {
      await client.close().catch((e) => problem(`close failed: ${errorMessage(e)}`))
      const left = await sessionsLeft(server, subject.applicationName)
      if (left > 0) problem(`${left} sessions left ${SESSION_EXIT_MS} ms after close`)
    }
  }
}

// -----------------------------------------------------------------------------------------------------------------
// Statistics and formatting
// -----------------------------------------------------------------------------------------------------------------

interface Percentiles {
  readonly p50: number
  readonly p99: number
  readonly p999: number
}

/** Nearest-rank percentiles over every query of every round. */
const percentiles = (runs: ReadonlyArray<RunResult>): Percentiles => {
  const at = nearestRank(runs.map((r) => r.latencies))
  return { p50: at(0.5), p99: at(0.99), p999: at(0.999) }
}

interface Row {
  readonly name: string
  readonly failed: string | undefined
  readonly median: number
  readonly min: number
  readonly max: number
  readonly latency: Percentiles
  /** The round with the median fairness ratio (the lower one of the two middle rounds when even). */
  readonly fairness: Fairness
  /** Medians over the rounds. */
  readonly cpu: CpuShares
}

const rowOf = (subject: Subject, results: SubjectResults): Row => {
  const rates = results.runs.map((r) => r.rate)
  const fairness = results.runs.map((r) => fairnessOf(r.counts)).sort((a, b) => a.ratio - b.ratio)
  return {
    name: subject.name,
    failed: results.failed,
    median: rates.length === 0 ? NaN : median(rates),
    min: Math.min(...rates),
    max: Math.max(...rates),
    latency: percentiles(results.runs),
    fairness: fairness[(fairness.length - 1) >> 1] ?? { fewest: 0, most: 0, ratio: 0 },
    cpu: {
      bench: median(results.runs.map((r) => r.cpu.bench)),
      server: medianOf(results.runs.map((r) => r.cpu.server)),
      other: medianOf(results.runs.map((r) => r.cpu.other))
    }
  }
}

const medianOf = (xs: ReadonlyArray<number | undefined>): number | undefined =>
  xs.length === 0 || xs.some((x) => x === undefined) ? undefined : median(xs as ReadonlyArray<number>)

const count = (x: number): string => x.toLocaleString("en-US")

const BASELINES = [PG_POOL, SQL_PG_POOL, EFFECT_POOL] as const

const table = (rows: ReadonlyArray<Row>, rounds: number): string => {
  const find = (name: string) => rows.find((r) => r.name === name)!
  const columns = [
    "client",
    rounds > 1 ? "queries/s median (min–max)" : "queries/s",
    "p50 (ms)",
    "p99 (ms)",
    "p99.9 (ms)",
    "fewest / most per caller (ratio)",
    ...BASELINES.map((b) => `vs ${b.replace(/ \(.*\)$/, "")}`)
  ]
  const lines = [
    `| ${columns.join(" | ")} |`,
    `|---|${columns.slice(1).map(() => "--:").join("|")}|`,
    ...rows.map((r) => {
      if (r.failed !== undefined) return `| ${r.name} | failed: ${r.failed.replace(/\|/g, "\\|")} |`
      const f = r.fairness
      return `| ${r.name} | ${rate(r.median)}${rounds > 1 ? ` (${rate(r.min)}–${rate(r.max)})` : ""} | ` +
        `${ms(r.latency.p50)} | ${ms(r.latency.p99)} | ${ms(r.latency.p999)} | ` +
        `${count(f.fewest)} / ${count(f.most)} (${f.ratio.toFixed(2)}) | ` +
        BASELINES.map((b) => times(r.median / find(b).median, 2)).join(" | ") +
        " |"
    })
  ]
  return lines.join("\n")
}

/** Above this share of a core, something besides the bench and its server ran during a run. */
const NOISE_PERCENT = 10

const percent = (x: number | undefined): string => (x === undefined ? "?" : `${x.toFixed(0)}%`)

const cpuTable = (rows: ReadonlyArray<Row>): string =>
  [
    "| client | bench process | PostgreSQL | other processes |",
    "|---|--:|--:|--:|",
    ...rows
      .filter((r) => r.failed === undefined)
      .map((r) => `| ${r.name} | ${percent(r.cpu.bench)} | ${percent(r.cpu.server)} | ${percent(r.cpu.other)} |`)
  ].join("\n")

/** The issue's targets: speed against the clients we replace or compete with, and fairness of ours. */
const targets = (rows: ReadonlyArray<Row>): ReadonlyArray<Target> => {
  const find = (name: string) => rows.find((r) => r.name === name)!
  const speed = (name: string, baseline: string, atLeast: number): Target => {
    const ratio = find(name).median / find(baseline).median
    return {
      name: `${name} ≥ ${atLeast.toFixed(1)}× ${baseline} queries/s`,
      value: times(ratio, 2),
      met: ratio >= atLeast // NaN (a failed client) is a miss
    }
  }
  const fair = (name: string): Target => {
    const { fewest, most, ratio } = find(name).fairness
    return {
      name: `${name} fewest/most queries per caller ≥ 0.8`,
      value: `${count(fewest)} / ${count(most)} = ${ratio.toFixed(2)}`,
      met: find(name).failed === undefined && ratio >= 0.8
    }
  }
  return [
    speed(SQL_OURS, SQL_PG_POOL, 1.0),
    speed(RAW_OURS, PG_POOL, 0.8),
    speed(RAW_OURS, EFFECT_POOL, 1.5),
    fair(SQL_OURS),
    fair(RAW_OURS)
  ]
}

// -----------------------------------------------------------------------------------------------------------------
// The run
// -----------------------------------------------------------------------------------------------------------------

export const main = async (): Promise<void> => {
  const seconds = positive("BENCH_PG_SECONDS", process.env.BENCH_PG_SECONDS, DEFAULT_SECONDS, false)
  const rounds = positive("BENCH_ROUNDS", process.env.BENCH_ROUNDS, DEFAULT_ROUNDS, true)
  const began = performance.now()
  const cpus = os.cpus()
  progress("pg: starting PostgreSQL")
  const server = await openServer()
  try {
    const version = (await server.query<{ server_version: string }>("SHOW server_version"))[0]?.server_version ?? "?"
    console.log("## pg: SELECT 1 through pg.Pool, @effect/sql-pg, PgPool and effect Pool.make")
    console.log("")
    console.log(machineLine())
    console.log(commitLine())
    console.log(
      `- server: PostgreSQL ${version}, ${server.description}; it shares the machine's ${cpus.length} cores with ` +
        "the bench (no pinning), so its backends and the bench's event loop compete for CPU"
    )
    console.log(
      `- versions: effect ${versionOf("effect")}, @effect/sql ${versionOf("@effect/sql")}, @effect/sql-pg ` +
        `${versionOf("@effect/sql-pg")}, pg ${versionOf("pg")}, pg-pool ${versionOf("pg-pool")}`
    )
    console.log(
      `- every client: ${CONNECTIONS} connections, ${CALLERS} concurrent callers (async loops for pg.Pool, fibers ` +
        `for the rest) each looping \`${TEXT}\` (simple protocol, no parameters) until a shared deadline`
    )
    console.log(
      `- ${seconds} s per client (BENCH_PG_SECONDS) after a ${WARMUP_MS} ms warm-up, ${rounds} round(s) ` +
        "(BENCH_ROUNDS); clients run one after another, each opened before its run and closed after it, in an " +
        "order that rotates each round; a full GC before each measured run"
    )
    console.log(
      "- latency: `performance.now()` from asking for a connection to having the result, every counted query; " +
        "percentiles over all rounds. Fairness: the fewest / most queries any one caller completed in a run" +
        (rounds > 1 ? " (the round with the median ratio); queries/s is the median round" : "")
    )
    console.log("")

    const subjects = makeSubjects()
    const results = new Map<Subject, SubjectResults>(subjects.map((s) => [s, { runs: [], failed: undefined }]))
    for (let r = 0; r < rounds; r++) {
      for (const s of rotate(subjects, r)) {
        progress(`round ${r + 1}/${rounds}: ${s.name}`)
        const result = await measure(server, s, seconds * 1000, r + 1)
        const entry = results.get(s)!
        if (typeof result === "string") {
          entry.failed ??= result
          problems.push(`${s.name}, round ${r + 1}: failed: ${result}`)
        } else {
          entry.runs.push(result)
        }
      }
    }

    const rows = subjects.map((s) => rowOf(s, results.get(s)!))
    console.log(`### ${count(CALLERS)} callers, ${CONNECTIONS} connections, ${seconds} s per client`)
    console.log("")
    console.log(table(rows, rounds))
    console.log("")
    console.log(`CPU during the measured runs, in % of one core (the machine has ${cpus.length}):`)
    console.log("")
    console.log(cpuTable(rows))
    console.log("")
    const noisy = rows.filter((r) => (r.cpu.other ?? 0) > NOISE_PERCENT)
    if (noisy.length > 0) {
      console.log(
        `Noise: other processes took more than ${NOISE_PERCENT}% of a core during ` +
          `${noisy.map((r) => r.name).join(", ")}; those numbers may be low: rerun on a quiet machine.`
      )
      console.log("")
    }
    printSummary(
      began,
      problems,
      `Checks: every query returned 1; no client had more than ${CONNECTIONS} sessions; none left a session after ` +
        "it closed.",
      targets(rows)
    )
  } finally {
    await server.destroy()
  }
}
