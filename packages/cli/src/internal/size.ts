import type { Summary } from "./load.js"
import { ms } from "./view.js"

/** One size of the sweep. @internal */
export interface Point {
  readonly maxSize: number
  readonly opsPerS: number
  readonly waitP99Ms: number
  readonly latencyP99Ms: number
  readonly errors: number
}

/** @internal */
export const point = (maxSize: number, s: Summary): Point => ({
  maxSize,
  opsPerS: s.opsPerS,
  waitP99Ms: s.waitP99Ms,
  latencyP99Ms: s.latencyP99Ms,
  errors: s.errorCount
})

/** Sizes to try when none are given: powers of two up to the concurrency, and the concurrency itself. @internal */
export const defaultSizes = (concurrency: number): Array<number> => {
  const sizes: Array<number> = []
  for (let n = 1; n < concurrency; n *= 2) sizes.push(n)
  sizes.push(concurrency)
  return sizes
}

/** The smallest size whose throughput is within `tolerance` (a fraction) of the best. @internal */
export const recommend = (points: ReadonlyArray<Point>, tolerance: number): Point => {
  const best = Math.max(...points.map((p) => p.opsPerS))
  const good = points.filter((p) => p.errors === 0 && p.opsPerS >= best * (1 - tolerance))
  const pool = good.length > 0 ? good : points
  return pool.reduce((a, b) => (b.maxSize < a.maxSize ? b : a))
}

/** @internal */
export const table = (points: ReadonlyArray<Point>, chosen: Point): string => {
  const best = Math.max(...points.map((p) => p.opsPerS))
  const lines = ["max-size   ops/s        wait p99     latency p99  errors", ...points.map((p) => {
    const mark = p === chosen ? "  ← recommended" : ""
    return `${String(p.maxSize).padStart(8)}   ${Math.round(p.opsPerS).toLocaleString("en-US").padStart(10)}   ` +
      `${`≤${ms(p.waitP99Ms)}`.padStart(10)}   ${ms(p.latencyP99Ms).padStart(11)}  ${String(p.errors).padStart(6)}` +
      `  ${"█".repeat(Math.max(1, Math.round((p.opsPerS / best) * 30)))}${mark}`
  })]
  return lines.join("\n") + "\n"
}

const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;")

/** The sweep as an SVG bar chart of throughput per size, the recommended size highlighted. @internal */
export const svg = (points: ReadonlyArray<Point>, chosen: Point, title: string): string => {
  const width = 640
  const height = 360
  const left = 70
  const bottom = 50
  const top = 50
  const best = Math.max(1, ...points.map((p) => p.opsPerS))
  const slot = (width - left - 20) / points.length
  const bars = points.map((p, i) => {
    const h = ((height - top - bottom) * p.opsPerS) / best
    const x = left + i * slot + slot * 0.15
    const y = height - bottom - h
    const fill = p === chosen ? "#2a9d4b" : "#4a78c2"
    return `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(slot * 0.7).toFixed(1)}" ` +
      `height="${h.toFixed(1)}" ` +
      `fill="${fill}"><title>max-size ${p.maxSize}: ${Math.round(p.opsPerS)} ops/s, wait p99 ≤${ms(p.waitP99Ms)}` +
      `</title></rect>\n<text x="${(x + slot * 0.35).toFixed(1)}" y="${height - bottom + 18}" text-anchor="middle">` +
      `${p.maxSize}</text>\n<text x="${(x + slot * 0.35).toFixed(1)}" y="${(y - 6).toFixed(1)}" text-anchor="middle" ` +
      `font-size="11">${Math.round(p.opsPerS).toLocaleString("en-US")}</text>`
  })
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" ` +
    `font-size="13">\n<rect width="100%" height="100%" fill="white"/>\n` +
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15">${escape(title)}</text>\n` +
    `<text x="${width / 2}" y="${height - 12}" text-anchor="middle">` +
    `max-size (recommended: ${chosen.maxSize})</text>\n` +
    `<text x="18" y="${height / 2}" transform="rotate(-90 18 ${height / 2})" text-anchor="middle">` +
    "statements/s</text>\n" +
    `<line x1="${left}" y1="${height - bottom}" x2="${width - 10}" y2="${height - bottom}" stroke="black"/>\n` +
    bars.join("\n") + "\n</svg>\n"
}
