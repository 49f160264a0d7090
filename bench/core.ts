/**
 * Issue 2: `ConnectionPool` against effect's `Pool.make`, generic-pool and tarn, each with a trivial in-memory
 * connection and at most 10 of them. Every cycle is the same work in every pool: acquire, a trivial use, release.
 *
 * - one fiber: a single loop, so the numbers are the cost of an uncontended borrow.
 * - 1000 fibers: 1000 concurrent loops of 100 cycles whose use yields once, so that 990 of them are always waiting.
 * - fairness: 1000 such loops until a shared deadline; the fewest and most cycles any loop completed.
 *
 * The Effect pools run as fibers (`Effect.whileLoop`, `Effect.forEach` unbounded); generic-pool and tarn as plain
 * async functions, so that each is measured natively.
 */
import { Effect, Pool, Tracer } from "effect"
import { createPool } from "generic-pool"
import { Pool as TarnPool } from "tarn"
import { ConnectionPool } from "../packages/core/src/index.js"
import type { Target } from "./common.js"
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

const MAX_SIZE = 10
const SEQUENTIAL_CYCLES = 50_000
const FIBERS = 1000
const CYCLES_PER_FIBER = 100
const FAIRNESS_MS = 1500
const WARMUP_SEQUENTIAL_CYCLES = 20_000
const WARMUP_CYCLES_PER_FIBER = 20
const DEFAULT_ROUNDS = 5

const BASELINE = "effect Pool.make"
const WITH_CONNECTION = "ConnectionPool withConnection"
const SCOPED_GET = "ConnectionPool get (scoped)"
const TRACED = "ConnectionPool withConnection, traced"
const TRACED_BASELINE = "effect Pool.make, traced"

/** A parent span for the traced rows, as a caller with OpenTelemetry on has one around its work. */
const parent = Tracer.externalSpan({ spanId: "00f067aa0ba902b7", traceId: "4bf92f3577b34da6a3ce929d0e0e4736" })
const traced = (borrow: Borrow): Borrow => (f) => Effect.withParentSpan(borrow(f), parent)

// -----------------------------------------------------------------------------------------------------------------
// The connection
// -----------------------------------------------------------------------------------------------------------------

/** Counts, per pool, what the pool did to its connections, so that a broken pool cannot post a good number. */
class Tracker {
  open = 0
  maxOpen = 0
  uses = 0
  overlaps = 0
  readonly connect = (): Conn => {
    this.open++
    if (this.open > this.maxOpen) this.maxOpen = this.open
    return new Conn(this)
  }
  readonly close = (_conn: Conn): void => {
    this.open--
  }
}

class Conn {
  busy = false
  constructor(readonly tracker: Tracker) {}
}

/** The pool has lent `conn`: it must not be lent to anyone else until `touch`. */
const hold = (conn: Conn): void => {
  if (conn.busy) conn.tracker.overlaps++
  conn.busy = true
}

/** The trivial use, the last thing before the release. */
const touch = (conn: Conn): void => {
  conn.busy = false
  conn.tracker.uses++
}

// -----------------------------------------------------------------------------------------------------------------
// Subjects: one per pool, each able to run the three loops
// -----------------------------------------------------------------------------------------------------------------

/** Acquire waits in milliseconds, one per cycle, written by whichever loop completes an acquire. */
interface Samples {
  readonly waits: Float64Array
  n: number
}

interface Subject {
  readonly name: string
  readonly tracker: Tracker
  /** One loop of `cycles`, the use not yielding. */
  readonly sequential: (cycles: number, samples: Samples) => Promise<void>
  /** `fibers` concurrent loops of `cycles` each, the use yielding once. */
  readonly contended: (fibers: number, cycles: number, samples: Samples) => Promise<void>
  /** `fibers` concurrent loops, the use yielding once, until `deadline`: the cycles each completed before it. */
  readonly fixedTime: (fibers: number, deadline: number) => Promise<Uint32Array>
  readonly close: () => Promise<void>
}

/** Runs `f` on a lent connection and gives the connection back, whatever the pool's API for that. */
type Borrow = <X>(f: (conn: Conn) => Effect.Effect<X>) => Effect.Effect<X, unknown>

const useNow = (conn: Conn): Effect.Effect<void> => Effect.sync(() => touch(conn))
const useYielding = (conn: Conn): Effect.Effect<void> => Effect.zipRight(Effect.yieldNow(), useNow(conn))

const effectSubject = (name: string, tracker: Tracker, borrow: Borrow, close: () => Promise<void>): Subject => {
  const cycle = (
    use: (conn: Conn) => Effect.Effect<void>,
    samples: Samples | undefined
  ): Effect.Effect<void, unknown> =>
    Effect.suspend(() => {
      const start = performance.now()
      return borrow((conn) => {
        if (samples !== undefined) samples.waits[samples.n++] = performance.now() - start
        hold(conn)
        return use(conn)
      })
    })
  const repeat = (body: Effect.Effect<void, unknown>, cycles: number) =>
    Effect.suspend(() => {
      let i = 0
      return Effect.whileLoop({ while: () => i < cycles, body: () => body, step: () => i++ })
    })
  const fibers = (n: number, fiber: (i: number) => Effect.Effect<void, unknown>) =>
    Effect.forEach(Array.from({ length: n }, (_, i) => i), fiber, { concurrency: "unbounded", discard: true })
  return {
    name,
    tracker,
    sequential: (cycles, samples) => Effect.runPromise(repeat(cycle(useNow, samples), cycles)),
    contended: (n, cycles, samples) => Effect.runPromise(fibers(n, () => repeat(cycle(useYielding, samples), cycles))),
    fixedTime: async (n, deadline) => {
      const counts = new Uint32Array(n)
      const state = { stop: false }
      const body = cycle(useYielding, undefined)
      await Effect.runPromise(fibers(n, (i) =>
        Effect.whileLoop({
          while: () => !state.stop,
          body: () => body,
          step: () => {
            if (performance.now() >= deadline) state.stop = true
            else counts[i]++
          }
        })))
      return counts
    },
    close
  }
}

const yieldOnce = (): Promise<void> => Promise.resolve()

const promiseSubject = (
  name: string,
  tracker: Tracker,
  acquire: () => Promise<Conn>,
  release: (conn: Conn) => void,
  close: () => Promise<void>
): Subject => {
  const sequential = async (cycles: number, samples: Samples) => {
    for (let i = 0; i < cycles; i++) {
      const start = performance.now()
      const conn = await acquire()
      samples.waits[samples.n++] = performance.now() - start
      hold(conn)
      try {
        touch(conn)
      } finally {
        release(conn)
      }
    }
  }
  const cycle = async (samples: Samples | undefined) => {
    const start = performance.now()
    const conn = await acquire()
    if (samples !== undefined) samples.waits[samples.n++] = performance.now() - start
    hold(conn)
    try {
      await yieldOnce()
      touch(conn)
    } finally {
      release(conn)
    }
  }
  const loop = async (cycles: number, samples: Samples) => {
    for (let i = 0; i < cycles; i++) await cycle(samples)
  }
  return {
    name,
    tracker,
    sequential,
    contended: async (n, cycles, samples) => {
      await Promise.all(Array.from({ length: n }, () => loop(cycles, samples)))
    },
    fixedTime: async (n, deadline) => {
      const counts = new Uint32Array(n)
      const state = { stop: false }
      const fiber = async (i: number) => {
        while (!state.stop) {
          await cycle(undefined)
          if (performance.now() >= deadline) state.stop = true
          else counts[i]++
        }
      }
      await Promise.all(Array.from({ length: n }, (_, i) => fiber(i)))
      return counts
    },
    close
  }
}

const connectionPoolSubject = async (
  name: string,
  borrow: (pool: ConnectionPool.ConnectionPool<Conn>) => Borrow
): Promise<Subject> => {
  const tracker = new Tracker()
  const { close, value: pool } = await scoped(ConnectionPool.make({
    name,
    driver: { connect: Effect.sync(tracker.connect), close: (conn) => Effect.sync(() => tracker.close(conn)) },
    maxSize: MAX_SIZE
  }))
  return effectSubject(name, tracker, borrow(pool), close)
}

const effectPoolSubject = async (name: string, wrap: (borrow: Borrow) => Borrow): Promise<Subject> => {
  const tracker = new Tracker()
  const { close, value: pool } = await scoped(Pool.make({
    acquire: Effect.acquireRelease(Effect.sync(tracker.connect), (conn) => Effect.sync(() => tracker.close(conn))),
    size: MAX_SIZE
  }))
  return effectSubject(name, tracker, wrap((f) => Effect.scoped(Effect.flatMap(Pool.get(pool), f))), close)
}

const genericPoolSubject = (): Subject => {
  const tracker = new Tracker()
  const pool = createPool({
    create: async () => tracker.connect(),
    destroy: async (conn) => tracker.close(conn)
  }, { max: MAX_SIZE, min: 0 })
  return promiseSubject("generic-pool", tracker, () => pool.acquire(), (conn) => {
    // generic-pool's release does its work before returning; awaiting its promise would only add a tick
    void pool.release(conn)
  }, async () => {
    await pool.drain()
    await pool.clear()
  })
}

const tarnSubject = (): Subject => {
  const tracker = new Tracker()
  const pool = new TarnPool({
    create: async () => tracker.connect(),
    destroy: (conn: Conn) => tracker.close(conn),
    min: 0,
    max: MAX_SIZE,
    propagateCreateError: false
  })
  return promiseSubject("tarn", tracker, () => pool.acquire().promise, (conn) => {
    pool.release(conn)
  }, async () => {
    await pool.destroy()
  })
}

/** Like for like first: the scoped borrow both Effect pools have, then ours without a Scope, then traced, then peers. */
const makeSubjects = async (): Promise<ReadonlyArray<Subject>> => [
  await connectionPoolSubject(SCOPED_GET, (pool) => (f) => Effect.scoped(Effect.flatMap(pool.get, f))),
  await effectPoolSubject(BASELINE, (borrow) => borrow),
  await connectionPoolSubject(WITH_CONNECTION, (pool) => (f) => pool.withConnection(f)),
  await connectionPoolSubject(TRACED, (pool) => traced((f) => pool.withConnection(f))),
  await effectPoolSubject(TRACED_BASELINE, traced),
  genericPoolSubject(),
  tarnSubject()
]

// -----------------------------------------------------------------------------------------------------------------
// Measuring
// -----------------------------------------------------------------------------------------------------------------

interface CaseResult {
  readonly rates: Array<number>
  readonly waits: Array<Float64Array>
}

const problems: Array<string> = []

const measure = async (
  subject: Subject,
  label: string,
  cycles: number,
  run: (samples: Samples) => Promise<void>
): Promise<{ readonly rate: number; readonly waits: Float64Array }> => {
  gc()
  const samples: Samples = { waits: new Float64Array(cycles), n: 0 }
  const uses = subject.tracker.uses
  const start = performance.now()
  await run(samples)
  const ms = performance.now() - start
  const done = subject.tracker.uses - uses
  if (done !== cycles || samples.n !== cycles) {
    problems.push(`${subject.name}, ${label}: ${done} uses and ${samples.n} acquires for ${cycles} cycles`)
  }
  return { rate: (cycles / ms) * 1000, waits: samples.waits }
}

const record = async (
  results: Map<Subject, CaseResult>,
  subject: Subject,
  label: string,
  cycles: number,
  run: (samples: Samples) => Promise<void>
) => {
  const { rate, waits } = await measure(subject, label, cycles, run)
  const result = results.get(subject) ?? { rates: [], waits: [] }
  result.rates.push(rate)
  result.waits.push(waits)
  results.set(subject, result)
}

// -----------------------------------------------------------------------------------------------------------------
// Statistics and formatting
// -----------------------------------------------------------------------------------------------------------------

interface Waits {
  readonly p50: number
  readonly p99: number
  readonly max: number
}

/** Nearest-rank percentiles over every sample of every round. */
const waitStats = (rounds: ReadonlyArray<Float64Array>): Waits => {
  const at = nearestRank(rounds)
  return { p50: at(0.5), p99: at(0.99), max: at(1) }
}

interface Row {
  readonly name: string
  readonly median: number
  readonly min: number
  readonly max: number
  readonly waits: Waits
  /** The round with the median fairness ratio. */
  readonly fairness: Uint32Array | undefined
}

const rows = (
  subjects: ReadonlyArray<Subject>,
  results: Map<Subject, CaseResult>,
  fairness: Map<Subject, Array<Uint32Array>> | undefined
): ReadonlyArray<Row> =>
  subjects.map((s) => {
    const r = results.get(s)!
    return {
      name: s.name,
      median: median(r.rates),
      min: Math.min(...r.rates),
      max: Math.max(...r.rates),
      waits: waitStats(r.waits),
      fairness: medianRound(fairness?.get(s))
    }
  })

/** Of each round's counts, the round whose fewest / most ratio is the median (the lower middle one when even). */
const medianRound = (rounds: ReadonlyArray<Uint32Array> | undefined): Uint32Array | undefined => {
  if (rounds === undefined || rounds.length === 0) return undefined
  const sorted = [...rounds].sort((a, b) => fairnessOf(a).ratio - fairnessOf(b).ratio)
  return sorted[(sorted.length - 1) >> 1]
}

const fairnessCell = (counts: Uint32Array | undefined): string => {
  if (counts === undefined) return "— (one fiber)"
  const { fewest, most, ratio } = fairnessOf(counts)
  return `${fewest} / ${most} (${most === 0 ? "—" : ratio.toFixed(2)})`
}

const COLUMNS = [
  "pool",
  "cycles/s median",
  "min–max",
  "vs effect Pool.make",
  "wait p50 (ms)",
  "p99 (ms)",
  "max (ms)",
  "max/p99",
  "fewest / most per fiber (ratio)"
]

const table = (title: string, rows: ReadonlyArray<Row>): string => {
  const baseline = rows.find((r) => r.name === BASELINE)!.median
  const lines = [
    `### ${title}`,
    "",
    `| ${COLUMNS.join(" | ")} |`,
    `|---|${COLUMNS.slice(1).map(() => "--:").join("|")}|`,
    ...rows.map((r) =>
      `| ${r.name} | ${rate(r.median)} | ${rate(r.min)}–${rate(r.max)} | ${times(r.median / baseline, 2)} | ` +
      `${ms(r.waits.p50)} | ${ms(r.waits.p99)} | ${ms(r.waits.max)} | ` +
      `${r.waits.p99 > 0 ? times(r.waits.max / r.waits.p99, 1) : "—"} | ${fairnessCell(r.fairness)} |`
    )
  ]
  return lines.join("\n")
}

/**
 * Issue 8's targets: one fiber `withConnection` ≥ 3.5×; 1000 fibers `withConnection` ≥ 2.5× and the scoped `get`
 * ≥ 1.0× effect's `Pool.make`; and, for both ways of borrowing, the max wait within 5× the p99 (FIFO holds).
 */
const targets = (sequential: ReadonlyArray<Row>, contended: ReadonlyArray<Row>): ReadonlyArray<Target> => {
  const find = (rows: ReadonlyArray<Row>, name: string) => rows.find((r) => r.name === name)!
  const one = find(sequential, WITH_CONNECTION).median / find(sequential, BASELINE).median
  const goals: ReadonlyArray<readonly [string, number]> = [[WITH_CONNECTION, 2.5], [SCOPED_GET, 1.0]]
  return [
    { name: "one fiber, withConnection ≥ 3.5× effect Pool.make", value: times(one, 2), met: one >= 3.5 },
    ...goals.flatMap(([name, goal]) => {
      const row = find(contended, name)
      const speedup = row.median / find(contended, BASELINE).median
      const tail = row.waits.max / row.waits.p99
      return [
        {
          name: `${FIBERS} fibers, ${name} ≥ ${goal.toFixed(1)}× effect Pool.make cycles/s`,
          value: times(speedup, 2),
          met: speedup >= goal
        },
        { name: `${FIBERS} fibers, ${name} max wait ≤ 5× p99`, value: times(tail, 2), met: tail <= 5 }
      ]
    })
  ]
}

// -----------------------------------------------------------------------------------------------------------------
// The run
// -----------------------------------------------------------------------------------------------------------------

export const main = async (): Promise<void> => {
  const rounds = positive("BENCH_ROUNDS", process.env.BENCH_ROUNDS, DEFAULT_ROUNDS, true)
  const began = performance.now()
  console.log("## core: ConnectionPool vs effect Pool.make, generic-pool, tarn")
  console.log("")
  console.log(machineLine())
  console.log(commitLine())
  console.log(
    `- versions: effect ${versionOf("effect")}, generic-pool ${versionOf("generic-pool")}, tarn ${versionOf("tarn")}`
  )
  console.log(
    `- every pool: a trivial in-memory connection, at most ${MAX_SIZE} (ConnectionPool maxSize ${MAX_SIZE}; ` +
      `Pool.make size ${MAX_SIZE}; generic-pool and tarn min 0, max ${MAX_SIZE}); a cycle is acquire, use, release`
  )
  console.log(
    "- the contended use yields once: `Effect.yieldNow()` in the Effect pools, `await Promise.resolve()` in " +
      "generic-pool and tarn (both: to the back of the run queue; effect's scheduler itself falls back to a " +
      "`setTimeout(0)` every 2,048 tasks, Promise.resolve never does); generic-pool and tarn run as plain async functions"
  )
  console.log(
    "- wait: `performance.now()` from asking to holding, in every cycle of every pool (withConnection: at the " +
      "start of its callback); percentiles over all rounds"
  )
  console.log(
    `- ${rounds} rounds (BENCH_ROUNDS), pools interleaved and rotated each round, each warmed up first, a full GC ` +
      `before each run; cycles/s is the median round, min–max over rounds`
  )
  console.log(
    `- fairness: a run of ${FIBERS} loops for ${FAIRNESS_MS} ms each round, rotated like the others, cycles each ` +
      "completed before the deadline; the table shows the round with the median fewest/most ratio"
  )
  console.log(
    "- what each does at its defaults: ConnectionPool runs one sweeper fiber for acquireTimeout (30 s) and checks " +
      "each waiter's deadline there, no timer per acquire; tarn arms a 30 s acquire-timeout timer per acquire that " +
      "waits; generic-pool has no acquire timeout (waits forever); effect Pool.make has none either and is not FIFO"
  )
  console.log(
    "- the traced rows run each borrow under a parent span (`Effect.withParentSpan`), as with OpenTelemetry on; " +
      "ConnectionPool then makes a `ConnectionPool.acquire` span for every borrow that waits"
  )
  console.log("")

  const subjects = await makeSubjects()
  try {
    for (const s of subjects) {
      progress(`warm-up: ${s.name}`)
      const cycles = FIBERS * WARMUP_CYCLES_PER_FIBER
      await measure(s, "warm-up", WARMUP_SEQUENTIAL_CYCLES, (w) => s.sequential(WARMUP_SEQUENTIAL_CYCLES, w))
      await measure(s, "warm-up", cycles, (w) => s.contended(FIBERS, WARMUP_CYCLES_PER_FIBER, w))
    }
    const sequential = new Map<Subject, CaseResult>()
    const contended = new Map<Subject, CaseResult>()
    for (let r = 0; r < rounds; r++) {
      progress(`round ${r + 1}/${rounds}`)
      for (const s of rotate(subjects, r)) {
        await record(sequential, s, "one fiber", SEQUENTIAL_CYCLES, (w) => s.sequential(SEQUENTIAL_CYCLES, w))
      }
      for (const s of rotate(subjects, r)) {
        await record(
          contended,
          s,
          `${FIBERS} fibers`,
          FIBERS * CYCLES_PER_FIBER,
          (w) => s.contended(FIBERS, CYCLES_PER_FIBER, w)
        )
      }
    }
    const fairness = new Map<Subject, Array<Uint32Array>>()
    for (let r = 0; r < rounds; r++) {
      for (const s of rotate(subjects, r)) {
        progress(`fairness ${r + 1}/${rounds}: ${s.name}`)
        gc()
        const counts = await s.fixedTime(FIBERS, performance.now() + FAIRNESS_MS)
        fairness.set(s, [...(fairness.get(s) ?? []), counts])
      }
    }

    const one = rows(subjects, sequential, undefined)
    const many = rows(subjects, contended, fairness)
    console.log(table(`One fiber, ${SEQUENTIAL_CYCLES.toLocaleString("en-US")} cycles per round`, one))
    console.log("")
    console.log(table(
      `${FIBERS} fibers × ${CYCLES_PER_FIBER} cycles per round (the use yields once), fairness over ${FAIRNESS_MS} ms ` +
        "(the round with the median ratio)",
      many
    ))
    console.log("")
    for (const s of subjects) {
      const t = s.tracker
      if (t.overlaps > 0) problems.push(`${s.name}: lent a connection already in use ${t.overlaps} times`)
      if (t.maxOpen > MAX_SIZE) problems.push(`${s.name}: had ${t.maxOpen} connections open at once`)
    }
    printSummary(
      began,
      problems,
      `Checks: every pool completed every cycle, never lent a connection twice at once, opened ≤ ${MAX_SIZE}.`,
      targets(one, many)
    )
  } finally {
    for (const s of subjects) await s.close()
  }
}
