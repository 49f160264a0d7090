import { fileURLToPath } from "node:url"
import { defineProject } from "vitest/config"

export default defineProject({
  // so that `vitest --config packages/pg/vitest.config.ts` from the repo root finds the tests too
  root: fileURLToPath(new URL(".", import.meta.url)),
  test: {
    name: "pg",
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/harness/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
