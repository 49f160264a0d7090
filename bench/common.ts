/**
 * What the suites share: running Effects in a scope of their own, a full GC, the order of the subjects, settings from
 * the environment, statistics, number formatting, and the facts about the machine and the packages that a run prints.
 */
import { Effect, Exit, Scope } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import * as v8 from "node:v8"
import * as vm from "node:vm"

// -----------------------------------------------------------------------------------------------------------------
// Running
// -----------------------------------------------------------------------------------------------------------------

/** Progress goes to stderr, so that stdout holds just the results. */
export const progress = (line: string) => process.stderr.write(`${line}\n`)

/** Builds `make` in a scope of its own, kept open until `close`. */
export const scoped = async <A>(make: Effect.Effect<A, unknown, Scope.Scope>) => {
  const scope = Effect.runSync(Scope.make())
  const value = await Effect.runPromise(Scope.extend(make, scope))
  return { value, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** A full collection before each measured run, so that no run pays for the garbage of the one before it. */
export const gc: () => void = (() => {
  v8.setFlagsFromString("--expose-gc")
  const gc = vm.runInNewContext("gc") as unknown
  return typeof gc === "function" ? () => gc() : () => {}
})()

/** Round `r` starts at a different subject, so that no subject always runs right after the same one. */
export const rotate = <A>(items: ReadonlyArray<A>, r: number): ReadonlyArray<A> => {
  const k = r % items.length
  return [...items.slice(k), ...items.slice(0, k)]
}

/** The environment variable `name`'s `value`, a positive number (an integer if `integer`); `fallback` if unset. */
export const positive = (name: string, value: string | undefined, fallback: number, integer: boolean): number => {
  if (value === undefined || value === "") return fallback
  const n = Number(value)
  if (!(n > 0) || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new Error(`${name} must be a positive ${integer ? "integer" : "number"}, got "${value}"`)
  }
  return n
}

// -----------------------------------------------------------------------------------------------------------------
// Statistics
// -----------------------------------------------------------------------------------------------------------------

export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

/**
 * Nearest-rank percentiles over every sample of every one of `samples`: the returned function gives the `q`
 * quantile (0.5 for p50, 1 for the maximum), NaN when there are no samples.
 */
export const nearestRank = (samples: ReadonlyArray<Float64Array>): (q: number) => number => {
  const all = new Float64Array(samples.reduce((n, s) => n + s.length, 0))
  let offset = 0
  for (const s of samples) {
    all.set(s, offset)
    offset += s.length
  }
  all.sort()
  return (q) => all[Math.min(all.length - 1, Math.max(0, Math.ceil(q * all.length) - 1))] ?? NaN
}

export interface Fairness {
  readonly fewest: number
  readonly most: number
  /** `fewest / most`, 0 when `most` is 0. */
  readonly ratio: number
}

/** The fewest and most of `counts` (what each caller completed), and their ratio. */
export const fairnessOf = (counts: Uint32Array): Fairness => {
  let fewest = Infinity
  let most = 0
  for (const c of counts) {
    if (c < fewest) fewest = c
    if (c > most) most = c
  }
  return { fewest, most, ratio: most === 0 ? 0 : fewest / most }
}

// -----------------------------------------------------------------------------------------------------------------
// Formatting
// -----------------------------------------------------------------------------------------------------------------

/** Per second, in thousands. */
export const rate = (x: number): string => `${(x / 1000).toFixed(x >= 100_000 ? 0 : 1)}k`

/** Milliseconds, to about three significant digits. */
export const ms = (x: number): string =>
  x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x >= 0.01 ? x.toFixed(3) : x.toFixed(4)

/** A ratio, "—" when it is not a number (a failed or missing baseline). */
export const times = (x: number, digits: number): string => (Number.isFinite(x) ? `${x.toFixed(digits)}×` : "—")

// -----------------------------------------------------------------------------------------------------------------
// The setting
// -----------------------------------------------------------------------------------------------------------------

/** From `pkg/package.json`, or, for a package whose `exports` hide it (pg-pool), the one above its entry point. */
export const versionOf = (pkg: string): string => {
  const require = createRequire(import.meta.url)
  try {
    return (require(`${pkg}/package.json`) as { version: string }).version
  } catch {
    try {
      for (let dir = path.dirname(require.resolve(pkg)); dir !== path.dirname(dir); dir = path.dirname(dir)) {
        const file = path.join(dir, "package.json")
        if (!fs.existsSync(file)) continue
        const json = JSON.parse(fs.readFileSync(file, "utf8")) as { name?: string; version?: string }
        if (json.name === pkg) return json.version ?? "?"
      }
    } catch {
      // not installed
    }
    return "?"
  }
}

const loadAverage = () => os.loadavg().map((x) => x.toFixed(2)).join(" ")

/** The header's line about the code measured: the commit, and whether the tree had changes not in it. */
export const commitLine = (): string => {
  const git = (...args: Array<string>) => execFileSync("git", args, { encoding: "utf8", stdio: "pipe" }).trim()
  try {
    const dirty = git("status", "--porcelain", "--untracked-files=no") !== ""
    return `- code: commit ${git("rev-parse", "--short", "HEAD")}${dirty ? " with uncommitted changes (dirty tree)" : ", clean tree"}`
  } catch {
    return "- code: not a git checkout (commit unknown)"
  }
}

/** The header's line about the machine: its cores, OS and Node, and the load average now. */
export const machineLine = (): string => {
  const cpus = os.cpus()
  return `- machine: ${cpus.length} × ${cpus[0]?.model.trim() ?? "?"}, ${os.platform()} ${os.arch()}, ` +
    `node ${process.version}; load average at start ${loadAverage()}`
}

// -----------------------------------------------------------------------------------------------------------------
// The end of a run
// -----------------------------------------------------------------------------------------------------------------

/** One of the issue's targets: what was measured, formatted, and whether it met the target. */
export interface Target {
  readonly name: string
  readonly value: string
  readonly met: boolean
}

const verdict = (ok: boolean) => (ok ? "PASS" : "MISS")

/**
 * The run's last lines: `passed`, or the `problems` when there are any; the load average and how long the run took
 * since `began`; then the targets, one a line and all on one.
 */
export const printSummary = (
  began: number,
  problems: ReadonlyArray<string>,
  passed: string,
  targets: ReadonlyArray<Target>
): void => {
  console.log(problems.length === 0 ? passed : `Checks FAILED:\n${problems.map((p) => `- ${p}`).join("\n")}`)
  console.log(`Load average at end: ${loadAverage()}; ran in ${((performance.now() - began) / 1000).toFixed(0)} s.`)
  console.log("")
  console.log("Targets (informational, the exit code is 0 either way):")
  for (const t of targets) console.log(`- ${t.name}: ${t.value} ${verdict(t.met)}`)
  console.log("")
  console.log(
    `Targets: ${targets.filter((t) => t.met).length}/${targets.length} met — ` +
      targets.map((t) => `${verdict(t.met)} ${t.name}`).join("; ")
  )
}
