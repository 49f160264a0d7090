import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { cli } from "../examples/embed.js"

const root = path.resolve(__dirname, "../../..")

describe("README", () => {
  it("its command example is examples/embed.ts, verbatim (so tsc -b type-checks it)", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
    const section = readme.slice(readme.indexOf("## The command"))
    const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
    assert.strictEqual(block, fs.readFileSync(path.join(root, "packages/cli/examples/embed.ts"), "utf8"))
  })

  it.live("the example parses our flags into its own command, and rejects what the pool rejects", () =>
    Effect.gen(function*() {
      yield* cli(["node", "serve", "--max-size", "3", "8080"])
      const error = yield* Effect.flip(cli(["node", "serve", "--max-size", "0", "8080"]))
      assert.strictEqual(error._tag, "InvalidValue")
    }).pipe(Effect.provide(NodeContext.layer)))
})
