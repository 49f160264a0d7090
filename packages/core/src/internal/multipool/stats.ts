import type { PoolStats } from "../../PoolStats.js"

const summed = [
  "total",
  "inUse",
  "idle",
  "pending",
  "waiting",
  "minSize",
  "maxSize",
  "created",
  "destroyed",
  "acquired",
  "hits",
  "misses",
  "timeouts",
  "emptyFailures",
  "connectFailures",
  "validationFailures",
  "ceiling",
  "overloadFailures",
  "leaksSuspected",
  "leaked"
] as const

/** Several pools as one: gauges and counters summed, mean wait weighted by acquisitions. @internal */
export const aggregate = (name: string, all: ReadonlyArray<PoolStats>): PoolStats => {
  const sums = Object.fromEntries(summed.map((k) => [k, all.reduce((n, s) => n + s[k], 0)])) as Record<
    typeof summed[number],
    number
  >
  const waited = all.reduce((n, s) => n + s.waitTimeMeanMs * s.acquired, 0)
  return {
    name,
    ...sums,
    closed: all.every((s) => s.closed),
    waitTimeMeanMs: sums.acquired === 0 ? 0 : waited / sums.acquired,
    waitTimeMaxMs: all.reduce((m, s) => Math.max(m, s.waitTimeMaxMs), 0),
    useTimeRecentMs: sums.acquired === 0 ? 0 : all.reduce((n, s) => n + s.useTimeRecentMs * s.acquired, 0) / sums.acquired,
    // open only when every server's is: while one can still connect, the whole can
    breakerOpen: all.length > 0 && all.every((s) => s.breakerOpen),
    consecutiveConnectFailures: all.length === 0 ? 0 : Math.min(...all.map((s) => s.consecutiveConnectFailures))
  }
}
