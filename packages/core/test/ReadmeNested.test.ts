import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { main } from "../examples/nested.js"

const root = path.resolve(__dirname, "../../..")

describe("README: nested borrows and leak detection", () => {
  it("its example is examples/nested.ts, verbatim (so tsc -b type-checks it)", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
    const section = readme.slice(readme.indexOf("### Nested borrows and leak detection"))
    const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
    assert.strictEqual(block, fs.readFileSync(path.join(root, "packages/core/examples/nested.ts"), "utf8"))
  })

  it.effect("ten orders on a pool of two: each insert ran inside its own order's transaction, nobody waited", () =>
    Effect.gen(function*() {
      const [conns, stats] = yield* main
      for (const [i, conn] of conns.entries()) {
        const order = i + 1
        const at = conn.ran.indexOf(`BEGIN ${order}`)
        assert.deepStrictEqual(conn.ran.slice(at, at + 3), [`BEGIN ${order}`, `INSERT line of ${order}`, `COMMIT ${order}`])
      }
      assert.strictEqual(stats.acquired, 10) // the inner borrows were not borrows from the pool
      assert.isAtMost(stats.created, 2)
      assert.strictEqual(stats.timeouts, 0)
    }))
})
