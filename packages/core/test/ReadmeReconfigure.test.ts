import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { main } from "../examples/reconfigure.js"

const root = path.resolve(__dirname, "../../..")

describe("README: overload shedding and live reconfiguration", () => {
  it("its example is examples/reconfigure.ts, verbatim (so tsc -b type-checks it)", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
    const section = readme.slice(readme.indexOf("### Overload shedding and live reconfiguration"))
    const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
    assert.strictEqual(block, fs.readFileSync(path.join(root, "packages/core/examples/reconfigure.ts"), "utf8"))
  })

  it.effect("the example runs: its defaults, then the surge applied live", () =>
    Effect.gen(function*() {
      const result = yield* main.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map())))
      assert.strictEqual(result, "request 1 on connection 1; maxSize 50, 0 shed")
    }))
})
