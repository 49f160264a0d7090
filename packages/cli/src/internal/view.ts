import * as Effect from "effect/Effect"
import type { Sample, Summary } from "./load.js"

/** How results are shown: redrawn in place on a terminal, plain lines otherwise, or JSON lines. @internal */
export type Mode = "live" | "plain" | "json"

/** @internal */
export const write = (text: string) => Effect.sync(() => void process.stdout.write(text))

const num = (x: number, digits = 0) =>
  Number.isFinite(x) ? x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "—"

/** Milliseconds, with precision where it matters. @internal */
export const ms = (x: number) => {
  if (Number.isNaN(x)) return "—"
  if (x === Infinity) return ">52s" // past the wait histogram's last bucket
  return x < 1 ? `${x.toFixed(2)}ms` : x < 100 ? `${x.toFixed(1)}ms` : `${Math.round(x)}ms`
}

/** A wait quantile is a histogram bucket's upper bound. */
const upTo = (x: number) => Number.isNaN(x) ? "—" : `≤${ms(x)}`

const errorsText = (errors: Record<string, number>) => {
  const entries = Object.entries(errors)
  return entries.length === 0 ? "none" : entries.map(([tag, n]) => `${tag}=${n}`).join(" ")
}

/** One plain line per interval (stdout not a terminal). @internal */
export const plainLine = (s: Sample) =>
  `t=${s.elapsedS.toFixed(1)}s ops/s=${Math.round(s.opsPerS)} latency p50=${ms(s.latencyP50Ms)} ` +
  `p99=${ms(s.latencyP99Ms)} wait p50=${upTo(s.waitP50Ms)} p99=${upTo(s.waitP99Ms)} inUse=${s.inUse} ` +
  `idle=${s.idle} waiting=${s.waiting} errors: ${errorsText(s.errors)}\n`

const bar = (fraction: number, width: number) => {
  const n = Math.max(0, Math.min(width, Math.round(fraction * width)))
  return "█".repeat(n) + "·".repeat(width - n)
}

/** The live view's block of lines, redrawn in place. @internal */
export const liveBlock = (s: Sample, durationS: number, maxSize: number) => [
  `  ${bar(s.elapsedS / durationS, 30)} ${s.elapsedS.toFixed(1)}s / ${durationS}s`,
  `  throughput  ${num(s.opsPerS).padStart(10)} ops/s`,
  `  latency     p50 ${ms(s.latencyP50Ms).padStart(9)}   p99 ${ms(s.latencyP99Ms).padStart(9)}`,
  `  pool wait   p50 ${upTo(s.waitP50Ms).padStart(9)}   p99 ${upTo(s.waitP99Ms).padStart(9)}`,
  `  connections in use ${String(s.inUse).padStart(3)}  idle ${String(s.idle).padStart(3)}  waiting ${
    String(s.waiting).padStart(4)
  }  (of ${maxSize})`,
  `  errors      ${errorsText(s.errors)}`
]

/** Rewrites the previous block of `lines` lines (cursor up, clear each line). @internal */
export const redraw = (previous: number, block: ReadonlyArray<string>) =>
  (previous > 0 ? `\x1b[${previous}F` : "") + block.map((line) => `\x1b[2K${line}\n`).join("")

/** @internal */
export const summaryTable = (s: Summary) => {
  const rows: Array<[string, string]> = [
    ["statements", num(s.ops)],
    ["throughput", `${num(s.opsPerS)} /s`],
    [
      "latency p50 / p90 / p99 / max",
      [s.latencyP50Ms, s.latencyP90Ms, s.latencyP99Ms, s.latencyMaxMs].map(ms).join(" / ")
    ],
    ["pool wait p50 / p99", `${upTo(s.waitP50Ms)} / ${upTo(s.waitP99Ms)}`],
    ["connections opened", num(s.created)],
    ["acquire timeouts", num(s.timeouts)],
    ["errors", s.errorCount === 0 ? "none" : `${num(s.errorCount)} (${errorsText(s.errors)})`]
  ]
  const width = Math.max(...rows.map(([k]) => k.length))
  const valueWidth = Math.max(...rows.map(([, v]) => v.length))
  const line = `+${"-".repeat(width + 2)}+${"-".repeat(valueWidth + 2)}+`
  return [line, ...rows.map(([k, v]) => `| ${k.padEnd(width)} | ${v.padStart(valueWidth)} |`), line].join("\n") + "\n"
}
