import { describe, it } from "@effect/vitest"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { assertNoNames, namesPerPath } from "../../core/test/support/namesChild.js"
import { suiteUrl } from "./utils.js"

// Under tsx, esbuild's keepNames wraps every closure bound to a name in a `__name` call; three per statement (in
// `PoolClient.query` and the borrow's step) cost `PgClient` on our pool 8 µs of CPU a statement. See the core's
// Names.test.ts.
describe("under tsx's keepNames", () => {
  it("no statement's path names a closure", async () => {
    const perStatement = await namesPerPath(path.dirname(fileURLToPath(import.meta.url)), { PG_NAMES_URL: suiteUrl() })
    assertNoNames(perStatement, ["PgClient", "PgPool.withConnection + PgPool.query", "PgPool.get, scoped"], "statement")
  }, 90_000)
})
