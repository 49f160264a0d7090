import { assert, describe, it } from "@effect/vitest"
import * as child from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

// Our packages ship TypeScript. Under tsx (many users' runner, and the benchmarks'), esbuild's keepNames wraps
// every closure bound to a name in a `__name` call, an `Object.defineProperty` per closure made: on a borrow's
// path that cost PgClient 8 µs a statement and halved one-fiber `withConnection`. Keep every borrow's path free of
// them: write per-borrow closures as arguments, not as named bindings or object-literal properties.
describe("under tsx's keepNames", () => {
  it("no borrow's path names a closure", () => {
    const here = path.dirname(fileURLToPath(import.meta.url))
    const out = child.execFileSync(process.execPath, ["--import", "tsx", path.join(here, "support", "names.ts")], {
      cwd: here,
      encoding: "utf8",
      timeout: 60_000
    })
    const perBorrow = JSON.parse(out.trim().split("\n").pop()!) as Record<string, number>
    assert.deepStrictEqual(Object.keys(perBorrow).length, 5)
    for (const [name, calls] of Object.entries(perBorrow)) assert.strictEqual(calls, 0, `${name}: ${calls} per borrow`)
  }, 90_000)
})
