import { describe, it } from "@effect/vitest"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { assertNoNames, namesPerPath } from "./support/namesChild.js"

// Our packages ship TypeScript. Under tsx (many users' runner, and the benchmarks'), esbuild's keepNames wraps
// every closure bound to a name in a `__name` call, an `Object.defineProperty` per closure made: on a borrow's
// path that cost PgClient 8 µs a statement and halved one-fiber `withConnection`. Keep every borrow's path free of
// them: write per-borrow closures as arguments, not as named bindings or object-literal properties. The pg, tcp
// and sqlite packages have the same test for their paths.
describe("under tsx's keepNames", () => {
  it("no borrow's path names a closure", async () => {
    const perBorrow = await namesPerPath(path.dirname(fileURLToPath(import.meta.url)))
    assertNoNames(perBorrow, [
      "withConnection",
      "withConnectionTry",
      "get",
      "withConnectionCallback",
      "withConnectionCallback, built per call"
    ], "borrow")
  }, 90_000)
})
