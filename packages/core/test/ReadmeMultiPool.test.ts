import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { main } from "../examples/multipool.js"

const root = path.resolve(__dirname, "../../..")

describe("README: MultiPool", () => {
  it("its MultiPool example is examples/multipool.ts, verbatim (so tsc -b type-checks it)", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
    const section = readme.slice(readme.indexOf("## Many servers: MultiPool"))
    const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
    assert.strictEqual(block, fs.readFileSync(path.join(root, "packages/core/examples/multipool.ts"), "utf8"))
  })

  it.effect("the example runs, failing over from the server that is down", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* main,
        "db1 ran SELECT 1, db3 ran SELECT 1, db1 ran SELECT 1, db3 ran SELECT 1; healthy: 2/3"
      )
    }))
})
