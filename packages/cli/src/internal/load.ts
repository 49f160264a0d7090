import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import type * as MetricState from "effect/MetricState"
import { ROWS, type Session, TABLE } from "../Target.js"

/** What each fiber runs in a loop. @internal */
export interface Workload {
  readonly name: string
  readonly run: (sql: SqlClient.SqlClient, random: number) => Effect.Effect<unknown, SqlError>
}

/** @internal */
export const workloads = {
  read: {
    name: `read: SELECT by primary key on ${TABLE}`,
    run: (sql, random) => sql`SELECT id, name, n FROM ${sql(TABLE)} WHERE id = ${1 + Math.floor(random * ROWS)}`
  },
  mixed: {
    name: `mixed: 90 % SELECT, 10 % UPDATE by primary key on ${TABLE}`,
    run: (sql, random) => {
      const id = 1 + Math.floor(random * ROWS)
      return random * 1000 % 10 < 1
        ? sql`UPDATE ${sql(TABLE)} SET n = n + 1 WHERE id = ${id}`
        : sql`SELECT id, name, n FROM ${sql(TABLE)} WHERE id = ${id}`
    }
  }
} satisfies Record<string, Workload>

/** @internal */
export const query = (text: string): Workload => ({ name: `query: ${text}`, run: (sql) => sql.unsafe(text) })

/** A growable buffer of latencies, in milliseconds. */
class Samples {
  values = new Float64Array(1024)
  length = 0
  push(x: number) {
    if (this.length === this.values.length) {
      const next = new Float64Array(this.values.length * 2)
      next.set(this.values)
      this.values = next
    }
    this.values[this.length++] = x
  }
  quantiles(qs: ReadonlyArray<number>): Array<number> {
    if (this.length === 0) return qs.map(() => NaN)
    const sorted = this.values.slice(0, this.length).sort()
    return qs.map((q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))])
  }
}

/** The pool-wait histogram of the pools, summed: cumulative counts per upper bound (seconds). */
const waitHistogram = (names: ReadonlyArray<string>) =>
  Effect.map(Metric.snapshot, (pairs) => {
    let total: Array<[number, number]> | undefined
    let count = 0
    for (const pair of pairs) {
      if (pair.metricKey.name !== "db.client.connection.wait_time") continue
      const pool = pair.metricKey.tags.find((t) => t.key === "db.client.connection.pool.name")?.value
      if (pool === undefined || !names.includes(pool)) continue
      const state = pair.metricState as MetricState.MetricState.Histogram
      count += state.count
      if (total === undefined) total = state.buckets.map(([b, c]) => [b, c])
      else state.buckets.forEach(([, c], i) => (total![i][1] += c))
    }
    return { buckets: total ?? [], count }
  })

type Histogram = Effect.Effect.Success<ReturnType<typeof waitHistogram>>

/** Upper bound (ms) of the bucket holding quantile `q` of the waits between `before` and `after`. */
const waitQuantile = (before: Histogram, after: Histogram, q: number): number => {
  const n = after.count - before.count
  if (n <= 0) return NaN
  for (let i = 0; i < after.buckets.length; i++) {
    const c = after.buckets[i][1] - (before.buckets[i]?.[1] ?? 0)
    if (c >= q * n) return after.buckets[i][0] * 1000
  }
  return Infinity // past the last bucket
}

/** One line of the live view. @internal */
export interface Sample {
  readonly elapsedS: number
  readonly opsPerS: number
  readonly ops: number
  readonly latencyP50Ms: number
  readonly latencyP99Ms: number
  /** Upper bounds of the pool's wait-time histogram buckets (1-2-5 steps from 0.1 ms to 500 s). */
  readonly waitP50Ms: number
  readonly waitP99Ms: number
  readonly inUse: number
  readonly idle: number
  readonly waiting: number
  readonly total: number
  readonly errors: Record<string, number>
}

/** The whole run. @internal */
export interface Summary extends Sample {
  readonly latencyP90Ms: number
  readonly latencyMaxMs: number
  readonly errorCount: number
  readonly created: number
  readonly timeouts: number
}

/** The tag of a failure: the pool's own inside an SqlError (PoolTimeout, ConnectionError, …), else the SqlError. */
const tagOf = (error: SqlError): string => {
  const cause = error.cause as { _tag?: unknown } | undefined
  return typeof cause?._tag === "string" ? cause._tag : error._tag
}

/** @internal */
export interface LoadOptions {
  readonly workload: Workload
  readonly concurrency: number
  readonly durationMs: number
  readonly intervalMs: number
  readonly onSample: (sample: Sample) => Effect.Effect<void>
  /** Asked before each statement: true ends the run early (Ctrl-C), with a summary of what ran. */
  readonly stopped: () => boolean
}

/**
 * Runs `concurrency` fibers looping on the workload for `durationMs`, calling `onSample` every `intervalMs` with
 * that interval's numbers (errors are counted since the start). @internal
 */
export const run = (session: Session, options: LoadOptions): Effect.Effect<Summary> =>
  Effect.gen(function*() {
    const names = session.pools.map((p) => p.name)
    const all = new Samples()
    let interval = new Samples()
    const errors: Record<string, number> = {}
    let errorCount = 0
    const started = performance.now()
    const deadline = started + options.durationMs
    // Sampling is due every intervalMs. A fiber of the workload takes the sample when it sees it is due: with
    // statements that complete synchronously (SQLite on the main thread) effect's scheduler seldom lets a timer
    // fire, so a ticker fiber alone would starve. The ticker still samples when every fiber is stuck waiting.
    let nextSampleAt = started + options.intervalMs
    let sampling = false
    const maybeSample = Effect.suspend(() => {
      if (sampling || performance.now() < nextSampleAt) return Effect.void
      sampling = true
      return Effect.flatMap(sample, options.onSample).pipe(
        Effect.ensuring(Effect.sync(() => {
          sampling = false
          nextSampleAt = Math.max(nextSampleAt + options.intervalMs, performance.now() + options.intervalMs / 2)
        }))
      )
    })
    // Statements that complete synchronously keep effect's fibers on the microtask queue, where Node never gets
    // to its event loop: no signal (Ctrl-C), timer or output. Every 50 ms all the fibers wait for one setImmediate.
    let breathAt = started + 50
    let breath: Promise<void> | undefined
    const breathe = Effect.suspend(() => {
      if (breath === undefined) {
        if (performance.now() < breathAt) return Effect.void
        breath = new Promise((resolve) =>
          setImmediate(() => {
            breath = undefined
            breathAt = performance.now() + 50
            resolve()
          })
        )
      }
      const pending = breath
      return Effect.promise(() => pending)
    })
    const loop = Effect.gen(function*() {
      while (performance.now() < deadline && !options.stopped()) {
        yield* breathe
        yield* maybeSample
        const t0 = performance.now()
        const result = yield* Effect.either(options.workload.run(session.sql, Math.random()))
        const ms = performance.now() - t0
        if (result._tag === "Right") {
          all.push(ms)
          interval.push(ms)
        } else {
          const tag = tagOf(result.left)
          errors[tag] = (errors[tag] ?? 0) + 1
          errorCount++
          yield* Effect.sleep("1 millis") // a failing target is not hammered in a hot loop
        }
      }
    })
    const gauges = Effect.map(
      Effect.forEach(session.pools, (p) => p.stats),
      (stats) => ({
        inUse: stats.reduce((n, s) => n + s.inUse, 0),
        idle: stats.reduce((n, s) => n + s.idle, 0),
        waiting: stats.reduce((n, s) => n + s.waiting, 0),
        total: stats.reduce((n, s) => n + s.total, 0),
        created: stats.reduce((n, s) => n + s.created, 0),
        timeouts: stats.reduce((n, s) => n + s.timeouts, 0)
      })
    )
    const first = yield* waitHistogram(names)
    let previous = first
    let previousAt = started
    const sample = Effect.gen(function*() {
      const now = performance.now()
      const histogram = yield* waitHistogram(names)
      const [p50, p99] = interval.quantiles([0.5, 0.99])
      const g = yield* gauges
      const s: Sample = {
        elapsedS: (now - started) / 1000,
        ops: interval.length,
        opsPerS: interval.length / ((now - previousAt) / 1000),
        latencyP50Ms: p50,
        latencyP99Ms: p99,
        waitP50Ms: waitQuantile(previous, histogram, 0.5),
        waitP99Ms: waitQuantile(previous, histogram, 0.99),
        inUse: g.inUse,
        idle: g.idle,
        waiting: g.waiting,
        total: g.total,
        errors: { ...errors }
      }
      interval = new Samples()
      previous = histogram
      previousAt = now
      return s
    })
    const workers = yield* Effect.forkAll(Array.from({ length: options.concurrency }, () => loop))
    const ticker = yield* Effect.fork(
      Effect.forever(Effect.zipRight(Effect.sleep(options.intervalMs / 4), maybeSample))
    )
    yield* Fiber.join(workers)
    yield* Fiber.interrupt(ticker)
    const elapsed = (performance.now() - started) / 1000
    const histogram = yield* waitHistogram(names)
    const [p50, p90, p99, max] = all.quantiles([0.5, 0.9, 0.99, 1])
    const g = yield* gauges
    return {
      elapsedS: elapsed,
      ops: all.length,
      opsPerS: all.length / elapsed,
      latencyP50Ms: p50,
      latencyP90Ms: p90,
      latencyP99Ms: p99,
      latencyMaxMs: max,
      waitP50Ms: waitQuantile(first, histogram, 0.5),
      waitP99Ms: waitQuantile(first, histogram, 0.99),
      inUse: g.inUse,
      idle: g.idle,
      waiting: g.waiting,
      total: g.total,
      created: g.created,
      timeouts: g.timeouts,
      errors: { ...errors },
      errorCount
    }
  })
