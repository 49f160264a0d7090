import { assert } from "@effect/vitest"
import * as child from "node:child_process"
import * as path from "node:path"

/**
 * Runs `support/names.ts` of the test directory `dir` under tsx, as Names.test.ts does in each package, and
 * returns what it printed: the `__name` calls per borrow of each path (see `keepNames.ts`).
 */
export const namesPerPath = (dir: string, env: Record<string, string> = {}): Promise<Record<string, number>> =>
  new Promise((resolve, reject) =>
    child.execFile(process.execPath, ["--import", "tsx", path.join(dir, "support", "names.ts")], {
      cwd: dir,
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, ...env }
    }, (error, stdout) => error ? reject(error) : resolve(JSON.parse(stdout.trim().split("\n").pop()!)))
  )

/** Every one of the `paths` (and no other) made no `__name` call per `unit`. */
export const assertNoNames = (
  perPath: Record<string, number>,
  paths: ReadonlyArray<string>,
  unit: string
): void => {
  assert.deepStrictEqual(Object.keys(perPath).sort(), [...paths].sort())
  for (const [name, calls] of Object.entries(perPath)) assert.strictEqual(calls, 0, `${name}: ${calls} per ${unit}`)
}
