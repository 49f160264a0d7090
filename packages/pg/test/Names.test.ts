import { assert, describe, it } from "@effect/vitest"
import * as child from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { suiteUrl } from "./utils.js"

// Under tsx, esbuild's keepNames wraps every closure bound to a name in a `__name` call; three per statement (in
// `PoolClient.query` and the borrow's step) cost `PgClient` on our pool 8 µs of CPU a statement. See the core's
// Names.test.ts.
describe("under tsx's keepNames", () => {
  it("no statement's path names a closure", () => {
    const here = path.dirname(fileURLToPath(import.meta.url))
    const out = child.execFileSync(process.execPath, ["--import", "tsx", path.join(here, "support", "names.ts")], {
      cwd: here,
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, PG_NAMES_URL: suiteUrl() }
    })
    const perStatement = JSON.parse(out.trim().split("\n").pop()!) as Record<string, number>
    assert.strictEqual(Object.keys(perStatement).length, 3)
    for (const [name, calls] of Object.entries(perStatement)) {
      assert.strictEqual(calls, 0, `${name}: ${calls} per statement`)
    }
  }, 90_000)
})
