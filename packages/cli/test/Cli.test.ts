import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import pg from "pg"
import { inject } from "vitest"
import { cli, freePort, jsonLines, oneLine, tempDir, withPassword } from "./utils.js"

const secret = "hunter2-not-for-logs"

describe("usage errors: one line on stderr, exit 2", () => {
  it("unknown flags and subcommands, bad values, options the pool rejects, bad targets", async () => {
    const cases: Array<[ReadonlyArray<string>, RegExp]> = [
      [["load", "--bogus"], /unknown option --bogus/],
      [["frobnicate"], /Invalid subcommand .* use one of .load., .size., .check./],
      [["load", "--concurrency", "many"], /many/],
      [["load", "--duration", "forever"], /--duration: "forever" is not a positive duration/],
      [["load", "--max-size", "0"], /--max-size: invalid pool option maxSize = 0: must be at least 1/],
      [["size", "--min-size", "4", "--max-size", "2"], /--min-size: .*must not exceed maxSize \(2\)/],
      [["size", "--sizes", "1,two"], /--sizes: "1,two" is not a list of positive integers/],
      [["check"], /TARGET/],
      [["check", "mysql://root:" + secret + "@db/x"], /bad TARGET mysql:\/\/root:\*\*\*@db\/x/]
    ]
    const results = await Promise.all(cases.map(([args]) => cli(args)))
    results.forEach((r, i) => {
      const [args, pattern] = cases[i]
      const what = `${args.join(" ")}: ${JSON.stringify(r)}`
      assert.strictEqual(r.code, 2, what)
      assert.match(r.stderr, /^connection-pool: /, what)
      assert.match(r.stderr, pattern, what)
      assert.isTrue(oneLine(r.stderr), what)
      assert.notInclude(r.stderr + r.stdout, secret, what)
    })
  })
})

describe("--help", () => {
  it("lists every pool flag, with the library's default, and exits 0", async () => {
    const r = await cli(["load", "--help"])
    assert.strictEqual(r.code, 0, r.stderr)
    const flags = [
      "pool-name", "min-size", "max-size", "acquire-timeout", "connect-timeout", "idle-timeout", "max-lifetime",
      "max-lifetime-jitter", "validation-bypass", "validation-timeout", "keepalive-interval", "connect-retries",
      "connect-backoff", "connect-backoff-max", "shutdown-timeout", "concurrency", "duration", "workload", "query",
      "threads", "json"
    ]
    for (const flag of flags) assert.include(r.stdout, `--${flag}`)
    assert.include(r.stdout, "Default 10")
    assert.include(r.stdout, "Default 30s")
  })
})

describe("the embedded default", () => {
  it("load --json: samples every interval, then a summary", async () => {
    const r = await cli(["load", "--json", "--duration", "2500ms", "--concurrency", "8"])
    assert.strictEqual(r.code, 0, r.stderr)
    const lines = jsonLines(r.stdout)
    const samples = lines.filter((l) => l.type === "sample")
    const summary = lines.find((l) => l.type === "summary")!
    assert.isAtLeast(samples.length, 2)
    for (const s of samples) assert.isAbove(s.opsPerS, 0)
    assert.isAbove(samples[1].elapsedS, samples[0].elapsedS)
    assert.match(summary.target, /^embedded SQLite \(.*embedded\.db\)$/)
    assert.strictEqual(summary.concurrency, 8)
    assert.isAbove(summary.ops, 100)
    assert.strictEqual(summary.errorCount, 0)
    assert.deepStrictEqual(summary.errors, {})
    assert.isAtMost(summary.latencyP50Ms, summary.latencyP99Ms)
    assert.isAtMost(summary.latencyP99Ms, summary.latencyMaxMs)
  })

  it("load, not on a terminal: plain lines and the summary table, mixed workload", async () => {
    const r = await cli(["load", "--workload", "mixed", "--duration", "2s", "--max-size", "2", "--threads", "worker"])
    assert.strictEqual(r.code, 0, r.stderr)
    assert.include(r.stdout, "connection-pool load embedded SQLite")
    assert.include(r.stdout, "mixed: 90 % SELECT, 10 % UPDATE")
    assert.match(r.stdout, /^t=1\.\ds ops\/s=[1-9]\d* latency p50=.* inUse=\d+ idle=\d+ waiting=\d+ errors: none$/m)
    assert.notInclude(r.stdout, "\x1b[") // no cursor movement when stdout is not a terminal
    assert.match(r.stdout, /\| statements +\| +[\d,]+ \|/)
    assert.match(r.stdout, /\| errors +\| +none \|/)
  })

  it("size: a sweep, a recommendation and an SVG report", async () => {
    const dir = tempDir()
    const report = path.join(dir, "sizes.svg")
    const r = await cli([
      "size", "--sizes", "1,2", "--duration", "700ms", "--concurrency", "4", "--json", "--report", report
    ])
    assert.strictEqual(r.code, 0, r.stderr)
    const lines = jsonLines(r.stdout)
    assert.deepStrictEqual(lines.filter((l) => l.type === "size").map((l) => l.maxSize), [1, 2])
    const recommendation = lines.find((l) => l.type === "recommendation")!
    assert.include([1, 2], recommendation.maxSize)
    const svg = fs.readFileSync(report, "utf8")
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)
    assert.include(svg, `recommended: ${recommendation.maxSize}`)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("check sqlite:FILE, and a file that cannot be opened (exit 1, the file named)", async () => {
    const dir = tempDir()
    const ok = await cli(["check", `sqlite:${path.join(dir, "new.db")}`])
    assert.strictEqual(ok.code, 0, ok.stderr)
    assert.match(ok.stdout, /^server +SQLite 3\.\d+/m)
    assert.match(ok.stdout, /^connect +[\d.]+ms$/m)
    const missing = path.join(dir, "missing", "x.db")
    const bad = await cli(["check", `sqlite:${missing}`])
    assert.strictEqual(bad.code, 1)
    assert.isTrue(oneLine(bad.stderr), bad.stderr)
    assert.include(bad.stderr, `ConnectionError: pool "sqlite-writer": cannot open SQLite database "${missing}"`)
    fs.rmSync(dir, { recursive: true, force: true })
  })
})

describe("PostgreSQL (the suite's throwaway cluster)", () => {
  const url = () => withPassword(inject("pgUrl"), secret)

  it("check: server version and connect time; the password never printed", async () => {
    const r = await cli(["check", url()])
    assert.strictEqual(r.code, 0, r.stderr)
    assert.match(r.stdout, /^server +PostgreSQL \d+/m)
    assert.match(r.stdout, /^target +postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/postgres$/m)
    assert.notInclude(r.stdout + r.stderr, secret)
    const json = jsonLines((await cli(["check", "--json", url()])).stdout)[0]
    assert.strictEqual(json.ok, true)
    assert.notInclude(JSON.stringify(json), secret)
  })

  it("load --json, mixed: statements on a real server, the password in no line", async () => {
    const r = await cli([
      "load", "--json", "--workload", "mixed", "--duration", "2s", "--concurrency", "16", "--max-size", "4", url()
    ])
    assert.strictEqual(r.code, 0, r.stderr)
    assert.notInclude(r.stdout + r.stderr, secret)
    const summary = jsonLines(r.stdout).find((l) => l.type === "summary")!
    assert.isAbove(summary.ops, 100)
    assert.strictEqual(summary.errorCount, 0)
    assert.strictEqual(summary.maxSize, 4)
    assert.isAtMost(summary.total, 4)
    assert.match(summary.target, /^postgres:\/\/postgres:\*\*\*@/)
    // the table it made for the workload is gone again
    const client = new pg.Client({ connectionString: inject("pgUrl") })
    await client.connect()
    try {
      const { rows } = await client.query("SELECT to_regclass('connection_pool_load') AS t")
      assert.isNull(rows[0].t)
    } finally {
      await client.end()
    }
  })

  it("an unreachable server: one line naming it, exit 1, no password, no stack", async () => {
    const port = await freePort()
    const r = await cli(["check", "--connect-timeout", "2s", `postgres://app:${secret}@127.0.0.1:${port}/app`])
    assert.strictEqual(r.code, 1)
    assert.isTrue(oneLine(r.stderr), r.stderr)
    assert.include(r.stderr, `ConnectionError: pool "postgres": could not connect to PostgreSQL at 127.0.0.1:${port}`)
    assert.include(r.stderr, "connection refused")
    assert.notInclude(r.stdout + r.stderr, secret)
  })
})
