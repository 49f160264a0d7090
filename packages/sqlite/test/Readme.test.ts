import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { DbLive, program } from "../examples/sqlite.js"
import { tempDir } from "./utils.js"

const root = path.resolve(__dirname, "../../..")

describe("README", () => {
  it("its SQLite example is examples/sqlite.ts, verbatim (so tsc -b type-checks it)", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
    const section = readme.slice(readme.indexOf("## SQLite"))
    const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
    assert.strictEqual(block, fs.readFileSync(path.join(root, "packages/sqlite/examples/sqlite.ts"), "utf8"))
  })

  it.live("the example runs", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir
      const result = yield* Effect.provide(program, DbLive(path.join(dir, "notes.db")))
      assert.deepStrictEqual(result.notes, [{ id: 1, body: "written by the writer" }])
      assert.strictEqual(result.readers, 1)
    })))
})
