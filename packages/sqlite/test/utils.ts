import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** A temp directory for one test's database files, removed when its scope closes. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "cp-sqlite-test-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** Polls on the live clock until `until` holds, up to `seconds`. */
export const waitFor = <A, E, R>(effect: Effect.Effect<A, E, R>, until: (a: A) => boolean, seconds = 10) =>
  Effect.gen(function*() {
    const deadline = Date.now() + seconds * 1000
    let last: A
    do {
      last = yield* effect
      if (until(last)) return last
      yield* Effect.sleep("10 millis")
    } while (Date.now() < deadline)
    return yield* Effect.dieMessage(`condition not met within ${seconds}s; last value: ${JSON.stringify(last)}`)
  })

/** A statement that keeps SQLite busy for a while (about 0.1 s per million rows on this machine). */
export const slowQuery = (rows: number) =>
  `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${rows}) SELECT count(*) AS n FROM c`
