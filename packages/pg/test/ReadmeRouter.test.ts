import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"

const root = path.resolve(__dirname, "../../..")

describe("README: read/write splitting", () => {
  it("its example is examples/readwrite.ts, verbatim (so tsc -b type-checks it)", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
    const section = readme.slice(readme.indexOf("## Read/write splitting"))
    const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
    expect(block).toBe(fs.readFileSync(path.join(root, "packages/pg/examples/readwrite.ts"), "utf8"))
  })
})
