/**
 * SQLite: @connection-pool/sqlite's SqlClient (readers on the main thread, and on worker threads) against
 * @effect/sql-sqlite-node's own SqliteClient (one connection behind a semaphore), in one run. 200 fibers loop on
 * point selects by primary key on a 100k-row table, then on a mix where one statement in ten is an update.
 */
import { SqlitePool } from "@connection-pool/sqlite"
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient, Statement } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import { SqliteClient } from "@effect/sql-sqlite-node"
import Database from "better-sqlite3"
import { Effect, Exit, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { commitLine, gc, machineLine, median, positive, progress, rate, rotate, times, versionOf } from "./common.js"

const FIBERS = 200
const ROWS = 100_000
const WARMUP_MS = 300

interface Subject {
  readonly name: string
  readonly layer: (filename: string) => Layer.Layer<SqlClient.SqlClient, unknown>
}

/**
 * The floor: @effect/sql's own statement path (compile, span, scope) over one better-sqlite3 connection that costs
 * nothing to get, with prepared statements in a plain map. Any client built on @effect/sql pays at least this.
 */
const floorLayer = (filename: string): Layer.Layer<SqlClient.SqlClient> =>
  Layer.scoped(
    SqlClient.SqlClient,
    Effect.gen(function*() {
      const db = yield* Effect.acquireRelease(Effect.sync(() => new Database(filename)), (db) => Effect.sync(() => db.close()))
      const cache = new Map<string, Database.Statement>()
      const run = (sql: string, params: ReadonlyArray<unknown>): Exit.Exit<any, SqlError> => {
        try {
          let statement = cache.get(sql)
          if (statement === undefined) cache.set(sql, statement = db.prepare(sql))
          return Exit.succeed(statement.reader ? statement.all(...params) : (statement.run(...params), []))
        } catch (cause) {
          return Exit.fail(new SqlError({ cause, message: "Failed to execute statement" }))
        }
      }
      const connection = {
        execute: run,
        executeRaw: run,
        executeValues: run,
        executeUnprepared: run,
        executeStream: () => Effect.dieMessage("not used")
      } as unknown as Connection
      return yield* SqlClient.make({
        acquirer: Effect.succeed(connection),
        compiler: Statement.makeCompilerSqlite(),
        spanAttributes: [["db.system.name", "sqlite"]]
      })
    })
  ).pipe(Layer.provide(Reactivity.layer))

const subjects: ReadonlyArray<Subject> = [
  { name: "SqliteClient (@effect/sql-sqlite-node)", layer: (filename) => SqliteClient.layer({ filename }) },
  { name: "SqlitePool, main thread", layer: (filename) => SqlitePool.layer({ filename, threads: "main" }) },
  {
    name: "SqlitePool, 2 reader workers",
    layer: (filename) => SqlitePool.layer({ filename, threads: "worker", writerThread: "main", maxSize: 2 })
  },
  {
    name: "SqlitePool, 4 reader workers",
    layer: (filename) => SqlitePool.layer({ filename, threads: "worker", writerThread: "main", maxSize: 4 })
  },
  { name: "floor: @effect/sql over a free connection", layer: floorLayer }
]

type Workload = "read" | "mixed" | "scan"
const workloads: ReadonlyArray<Workload> = ["read", "mixed", "scan"]
const SCAN = 20_000

const seed = (filename: string) => {
  const db = new Database(filename)
  db.pragma("journal_mode = WAL")
  db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER NOT NULL)")
  const insert = db.prepare("INSERT INTO items (id, name, n) VALUES (?, ?, 0)")
  db.transaction(() => {
    for (let id = 1; id <= ROWS; id++) insert.run(id, `item-${id}`)
  })()
  db.close()
}

/** Statements per second by `FIBERS` fibers looping until a deadline `ms` away. */
const measure = (subject: Subject, filename: string, workload: Workload, ms: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    let done = 0
    let counting = false
    const loop = (deadline: number, seed: number) =>
      Effect.gen(function*() {
        let x = seed
        while (performance.now() < deadline) {
          x = (x * 1103515245 + 12345) & 0x7fffffff
          const id = (x % ROWS) + 1
          if (workload === "scan") {
            yield* sql`SELECT count(*) AS c, sum(length(name)) AS s FROM items WHERE id BETWEEN ${id} AND ${id + SCAN}`
          } else if (workload === "mixed" && x % 10 === 0) yield* sql`UPDATE items SET n = n + 1 WHERE id = ${id}`
          else yield* sql`SELECT id, name, n FROM items WHERE id = ${id}`
          if (counting) done++
        }
      })
    const run = (millis: number) => {
      const deadline = performance.now() + millis
      return Effect.forEach(Array.from({ length: FIBERS }, (_, i) => i + 1), (i) => loop(deadline, i), {
        concurrency: "unbounded",
        discard: true
      })
    }
    yield* run(WARMUP_MS)
    gc()
    counting = true
    const began = performance.now()
    const cpu = process.cpuUsage()
    yield* run(ms)
    const { system, user } = process.cpuUsage(cpu)
    // per CPU-second of the whole process (worker threads included): what the machine's other load cannot skew
    return { wall: done / ((performance.now() - began) / 1000), cpu: done / ((user + system) / 1e6) }
  }).pipe(Effect.provide(subject.layer(filename)))

export const main = async (): Promise<void> => {
  const seconds = positive("BENCH_SQLITE_SECONDS", process.env.BENCH_SQLITE_SECONDS, 2, false)
  const rounds = positive("BENCH_ROUNDS", process.env.BENCH_ROUNDS, 5, true)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cp-bench-sqlite-"))
  try {
    const filename = path.join(dir, "bench.db")
    progress(`sqlite: seeding ${ROWS} rows`)
    seed(filename)
    console.log(
      "## sqlite: point selects by primary key, a 10 % write mix, and range scans, through four SqlClients and " +
        "the floor"
    )
    console.log("")
    console.log(machineLine())
    console.log(commitLine())
    console.log(
      `- versions: effect ${versionOf("effect")}, @effect/sql ${versionOf("@effect/sql")}, @effect/sql-sqlite-node ` +
        `${versionOf("@effect/sql-sqlite-node")}, better-sqlite3 ${versionOf("better-sqlite3")}`
    )
    console.log(
      `- ${FIBERS} fibers each looping \`SELECT id, name, n FROM items WHERE id = ?\` on a ${ROWS}-row table in ` +
        "WAL mode (read), or that with one statement in ten `UPDATE items SET n = n + 1 WHERE id = ?` (mixed); and, " +
        `to show where worker threads pay, an aggregate over ${SCAN} rows by primary-key range (scan)`
    )
    console.log(
      `- ${seconds} s per client and workload (BENCH_SQLITE_SECONDS) after a ${WARMUP_MS} ms warm-up, ${rounds} ` +
        "round(s) (BENCH_ROUNDS), the order rotating each round; statements/s and ratios are medians over rounds " +
        "(each ratio is taken within its round, against SqliteClient's run of that round)"
    )
    console.log("")
    const runs = new Map<string, Array<number>>()
    const ratios = new Map<string, Array<number>>()
    const cpuRuns = new Map<string, Array<number>>()
    const cpuRatios = new Map<string, Array<number>>()
    const push = (m: Map<string, Array<number>>, k: string, x: number) => m.set(k, [...(m.get(k) ?? []), x])
    const key = (s: Subject, w: Workload) => `${s.name}|${w}`
    for (let r = 0; r < rounds; r++) {
      for (const workload of workloads) {
        const round = new Map<Subject, { wall: number; cpu: number }>()
        for (const s of rotate(subjects, r)) {
          progress(`round ${r + 1}/${rounds}: ${workload}: ${s.name}`)
          const result = await Effect.runPromise(measure(s, filename, workload, seconds * 1000))
          round.set(s, result)
          push(runs, key(s, workload), result.wall)
          push(cpuRuns, key(s, workload), result.cpu)
        }
        const base = round.get(subjects[0])!
        for (const [s, result] of round) {
          push(ratios, key(s, workload), result.wall / base.wall)
          push(cpuRatios, key(s, workload), result.cpu / base.cpu)
        }
      }
    }
    const table = (unit: string, values: Map<string, Array<number>>, ratios: Map<string, Array<number>>) => {
      console.log(`| client | ${workloads.map((w) => `${w}: ${unit} | ${w}: × SqliteClient`).join(" | ")} |`)
      console.log(`|---|${workloads.map(() => "---:|---:").join("|")}|`)
      for (const s of subjects) {
        const cell = (w: Workload) =>
          `${rate(median(values.get(key(s, w))!))} | ${times(median(ratios.get(key(s, w))!), 2)}`
        console.log(`| ${s.name} | ${workloads.map(cell).join(" | ")} |`)
      }
      console.log("")
    }
    table("statements/s", runs, ratios)
    console.log("Per CPU-second of the process (all its threads), which other load on the machine does not skew:")
    console.log("")
    table("statements/CPU-s", cpuRuns, cpuRatios)
    const spread = (w: Workload, s: Subject) => {
      const xs = ratios.get(key(s, w))!
      return `${times(Math.min(...xs), 2)}–${times(Math.max(...xs), 2)}`
    }
    console.log(
      "Ratio range over rounds (noise: the machine is shared): " +
        subjects.slice(1).map((s) => `${s.name}: ${workloads.map((w) => `${w} ${spread(w, s)}`).join(", ")}`).join("; ")
    )
    console.log("")
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
