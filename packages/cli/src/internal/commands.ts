import type * as ConnectionPool from "@connection-pool/core/ConnectionPool"
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as fs from "node:fs"
import * as PoolOptions from "../PoolOptions.js"
import * as Target from "../Target.js"
import * as load from "./load.js"
import * as size from "./size.js"
import * as view from "./view.js"

const target = Args.text({ name: "TARGET" }).pipe(
  Args.withDescription(
    "postgres://user@host:port/db, sqlite:FILE, or nothing: an embedded SQLite database in a temp dir"
  )
)

const usage = (text: string) => ValidationError.invalidValue(HelpDoc.p(text))

const positiveInteger = (name: string, fallback: number, description: string) =>
  Options.integer(name).pipe(
    Options.withDefault(fallback),
    Options.mapEffect((n) =>
      n >= 1 ? Effect.succeed(n) : Effect.fail(usage(`--${name} must be at least 1, got ${n}`))
    ),
    Options.withDescription(description)
  )

const durationFlag = (name: string, fallback: string, description: string) =>
  Options.text(name).pipe(
    Options.withDefault(fallback),
    Options.withPseudoName("DURATION"),
    Options.mapEffect((text) => {
      const d = PoolOptions.parseDuration(text)
      return Option.isSome(d) && Duration.isFinite(d.value) && Duration.toMillis(d.value) > 0
        ? Effect.succeed(Duration.toMillis(d.value))
        : Effect.fail(usage(`--${name}: "${text}" is not a positive duration (try 5s)`))
    }),
    Options.withDescription(description)
  )

const common = {
  pool: PoolOptions.options,
  concurrency: positiveInteger("concurrency", 32, "Fibers running the workload at once."),
  workload: Options.choice("workload", ["read", "mixed"]).pipe(
    Options.withDefault("read" as const),
    Options.withDescription(
      `Built-in workload on table ${Target.TABLE} (created with ${Target.ROWS} rows if missing, and then dropped ` +
        "at exit): read (SELECT by primary key) or mixed (10 % UPDATE)."
    )
  ),
  query: Options.text("query").pipe(
    Options.optional,
    Options.withDescription("Run this statement in a loop instead of a built-in workload.")
  ),
  threads: Options.choice("threads", ["main", "worker"]).pipe(
    Options.withDefault("main" as const),
    Options.withDescription("SQLite only: run reader connections on the main thread or one worker thread each.")
  ),
  json: Options.boolean("json").pipe(Options.withDescription("JSON lines on stdout instead of the view and tables."))
}

/** Passwords of the targets given, masked in anything printed. */
const secrets: Array<string> = []

export const scrub = (text: string): string => {
  let out = Target.mask(text)
  for (const secret of secrets) if (secret.length > 0) out = out.split(secret).join("***")
  return out
}

const parseTarget = (input: Option.Option<string>) =>
  Effect.tap(Target.parse(input), (t) =>
    Effect.sync(() => {
      if (t._tag !== "Postgres") return
      const password = new URL(Redacted.value(t.url)).password // as written, percent-encoded
      if (password === "") return
      secrets.push(password)
      try {
        secrets.push(decodeURIComponent(password))
      } catch {
        // not valid percent-encoding: only the form written can appear
      }
    }))

interface Workflow {
  readonly pool: ConnectionPool.PoolConfig
  readonly concurrency: number
  readonly workload: "read" | "mixed"
  readonly query: Option.Option<string>
  readonly threads: "main" | "worker"
  readonly json: boolean
}

const workloadOf = (w: Workflow): load.Workload =>
  Option.match(w.query, { onNone: () => load.workloads[w.workload], onSome: load.query })

const openSession = (t: Target.Target, w: Workflow) =>
  Effect.tap(Target.open(t, w.pool, { threads: w.threads }), (session) =>
    Option.isNone(w.query) || t._tag === "Embedded" ? Target.seed(session) : Effect.void)

const maxSizeOf = (session: Target.Session) => Effect.map(session.pools[0].stats, (s) => s.maxSize)

const modeOf = (json: boolean): view.Mode => json ? "json" : process.stdout.isTTY ? "live" : "plain"

const json = (value: unknown) => view.write(scrub(JSON.stringify(value)) + "\n")

// Set by `requestStop` (the first Ctrl-C) while a load runs: the run ends early, with its summary.
let running = 0
let stopRequested = false

/** Ends a running `load` or `size` early; false when none runs. @internal */
export const requestStop = (): boolean => {
  if (running === 0 || stopRequested) return false // asked once already: the caller interrupts instead
  stopRequested = true
  return true
}

const tracked = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      running++
    }),
    () => effect,
    () =>
      Effect.sync(() => {
        running--
      })
  )

/** Runs one load and shows it as `mode` says; returns its summary. */
const runLoad = (
  session: Target.Session,
  w: Workflow,
  durationMs: number,
  mode: view.Mode,
  intervalMs: number
) =>
  Effect.gen(function*() {
    // the view sums the target's pools (for SQLite: the readers and the writer)
    const maxSize = (yield* Effect.forEach(session.pools, (p) => p.stats)).reduce((n, s) => n + s.maxSize, 0)
    let drawn = 0
    const onSample = (s: load.Sample) => {
      switch (mode) {
        case "json":
          return json({ type: "sample", ...s })
        case "plain":
          return view.write(view.plainLine(s))
        case "live": {
          const block = view.liveBlock(s, durationMs / 1000, maxSize)
          const text = view.redraw(drawn, block)
          drawn = block.length
          return view.write(text)
        }
      }
    }
    return yield* load.run(session, {
      stopped: () => stopRequested,
      workload: workloadOf(w),
      concurrency: w.concurrency,
      durationMs,
      intervalMs,
      onSample
    })
  })

export const loadCommand = Command.make("load", {
  ...common,
  target: Args.optional(target),
  duration: durationFlag("duration", "10s", "How long to run."),
  interval: durationFlag("interval", "250ms", "How often the view updates (plain lines and JSON: at least 1s).")
}, (w) =>
  Effect.scoped(Effect.gen(function*() {
    const t = yield* parseTarget(w.target)
    const mode = modeOf(w.json)
    const session = yield* openSession(t, w)
    const maxSize = yield* maxSizeOf(session)
    const workload = workloadOf(w)
    if (mode !== "json") {
      yield* view.write(
        scrub(
          `connection-pool load ${session.shown}\n  ${workload.name}; ${w.concurrency} fibers, max-size ${maxSize}, ` +
            `${w.duration / 1000}s\n\n`
        )
      )
    }
    const interval = mode === "live" ? w.interval : Math.max(1000, w.interval)
    const summary = yield* tracked(runLoad(session, w, w.duration, mode, interval))
    if (mode === "json") {
      return yield* json({
        type: "summary",
        target: session.shown,
        workload: workload.name,
        concurrency: w.concurrency,
        maxSize,
        ...summary
      })
    }
    yield* view.write("\n" + view.summaryTable(summary))
  })))

const parseSizes = Options.text("sizes").pipe(
  Options.optional,
  Options.withDescription("max-size values to try, comma-separated. Default: 1, 2, 4, … up to --concurrency."),
  Options.mapEffect(Option.match({
    onNone: () => Effect.succeed(Option.none<Array<number>>()),
    onSome: (text) => {
      const sizes = text.split(",").map((s) => Number(s.trim()))
      return sizes.every((n) => Number.isInteger(n) && n >= 1)
        ? Effect.succeed(Option.some([...new Set(sizes)].sort((a, b) => a - b)))
        : Effect.fail(usage(`--sizes: "${text}" is not a list of positive integers`))
    }
  }))
)

export const sizeCommand = Command.make("size", {
  ...common,
  target: Args.optional(target),
  sizes: parseSizes,
  duration: durationFlag("duration", "3s", "How long to run each size."),
  tolerance: Options.float("tolerance").pipe(
    Options.withDefault(0.05),
    Options.withDescription("Recommend the smallest size within this fraction of the best throughput.")
  ),
  report: Options.text("report").pipe(Options.optional, Options.withDescription("Also write the chart to FILE.svg."))
}, (w) =>
  Effect.scoped(Effect.gen(function*() {
    const t = yield* parseTarget(w.target)
    const sizes = Option.getOrElse(w.sizes, () => size.defaultSizes(w.concurrency))
    const mode = w.json ? "json" : "plain"
    const first = yield* openSession(t, { ...w, pool: { ...w.pool, maxSize: sizes[sizes.length - 1] } })
    const pool = first.pools[0]
    if (mode !== "json") {
      yield* view.write(scrub(
        `connection-pool size ${first.shown}\n  ${workloadOf(w).name}; ${w.concurrency} fibers, ` +
          `${w.duration / 1000}s per size\n\n`
      ))
    }
    const points: Array<size.Point> = []
    for (const maxSize of sizes) {
      if (stopRequested) break
      yield* pool.resize({ minSize: 0, maxSize })
      yield* pool.drain
      const summary = yield* tracked(runLoad(first, w, w.duration, "json", w.duration * 2)) // no live view
      const p = size.point(maxSize, summary)
      points.push(p)
      if (mode === "json") yield* json({ type: "size", ...p })
      else {
        yield* view.write(
          `  max-size ${String(maxSize).padStart(3)}: ${Math.round(p.opsPerS).toLocaleString("en-US")} ops/s\n`
        )
      }
    }
    const chosen = size.recommend(points, w.tolerance)
    if (Option.isSome(w.report)) {
      const svg = size.svg(points, chosen, scrub(`connection-pool size ${first.shown}`))
      yield* Effect.try({
        try: () => fs.writeFileSync(w.report.pipe(Option.getOrThrow), svg),
        catch: (e) => new ReportError({ file: Option.getOrThrow(w.report), reason: (e as Error).message })
      })
    }
    if (mode === "json") {
      return yield* json({ type: "recommendation", target: first.shown, maxSize: chosen.maxSize, points })
    }
    yield* view.write("\n" + size.table(points, chosen))
    yield* view.write(
      `\nrecommended max-size: ${chosen.maxSize} (the smallest within ${Math.round(w.tolerance * 100)} % of the ` +
        `best throughput)${Option.isSome(w.report) ? `; chart in ${w.report.value}` : ""}\n`
    )
  })))

/** Writing `--report` failed. @internal */
export class ReportError extends Data.TaggedError("ReportError")<{
  readonly file: string
  readonly reason: string
}> {
  override get message(): string {
    return `cannot write report ${this.file}: ${this.reason}`
  }
}

export const checkCommand = Command.make("check", {
  pool: PoolOptions.options,
  target,
  json: common.json
}, (w) =>
  Effect.scoped(Effect.gen(function*() {
    const t = yield* parseTarget(Option.some(w.target))
    const session = yield* Target.open(t, w.pool)
    const started = performance.now()
    const version = yield* Target.version(session)
    const queryMs = performance.now() - started
    if (w.json) {
      const { connectMs, shown } = session
      return yield* json({ type: "check", ok: true, target: shown, version, connectMs, queryMs })
    }
    yield* view.write(scrub(
      `target   ${session.shown}\nserver   ${version}\nconnect  ${view.ms(session.connectMs)}\n` +
        `query    ${view.ms(queryMs)}\nok\n`
    ))
  })))
