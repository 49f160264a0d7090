/**
 * Runs the benchmark suites: `node --import tsx bench/run.ts [suite]`, the default ones (core, pg) when none is
 * named. `memory` (heap per waiter and per idle connection) runs after core. `floor` (what a fair handoff costs
 * in effect 3 before any pool feature), `readwrite`, `tcp` and `sqlite` run only when named.
 */
const suites: Record<string, () => Promise<void>> = {
  core: () => import("./core.js").then((suite) => suite.main()),
  pg: () => import("./pg.js").then((suite) => suite.main()),
  floor: () => import("./floor.js").then((suite) => suite.main()),
  memory: () => import("./memory.js").then((suite) => suite.main()),
  readwrite: () => import("./readwrite.js").then((suite) => suite.main()),
  tcp: () => import("./tcp.js").then((suite) => suite.main()),
  sqlite: () => import("./sqlite.js").then((suite) => suite.main())
}
const defaults = ["core", "memory", "pg"]

const run = async (names: ReadonlyArray<string>): Promise<void> => {
  for (const name of names) {
    if (!Object.hasOwn(suites, name)) {
      console.error(`unknown suite "${name}"; known: ${Object.keys(suites).join(", ")}`)
      process.exitCode = 1
      return
    }
  }
  for (const name of names) await suites[name]()
}

const requested = process.argv.slice(2)
await run(requested.length === 0 || requested.includes("all") ? defaults : requested)
