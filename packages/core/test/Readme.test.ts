import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { main } from "../examples/quickstart.js"

const root = path.resolve(__dirname, "../../..")

describe("README", () => {
  it("its first example is examples/quickstart.ts, verbatim (so tsc -b type-checks it)", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
    const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1]
    const example = fs.readFileSync(path.join(root, "packages/core/examples/quickstart.ts"), "utf8")
    assert.strictEqual(block, example)
  })

  it.effect("the first example runs", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* main, "connection 1 ran SELECT now() (1 open, 1 borrowed)")
    }))
})
