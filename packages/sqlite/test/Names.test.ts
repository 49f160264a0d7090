import { describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { assertNoNames, namesPerPath } from "../../core/test/support/namesChild.js"
import { tempDir } from "./utils.js"

// Under tsx, esbuild's keepNames wraps every closure bound to a name in a `__name` call, paid per statement where
// the closure is made per statement. See the core's Names.test.ts.
describe("under tsx's keepNames", () => {
  it.scoped("no statement's path names a closure", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const here = path.dirname(fileURLToPath(import.meta.url))
      const perStatement = yield* Effect.promise(() => namesPerPath(here, { NAMES_DB: path.join(dir, "names.db") }))
      assertNoNames(perStatement, ["read", "write"], "statement")
    }), 90_000)
})
