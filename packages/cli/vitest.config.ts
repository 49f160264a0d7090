import { fileURLToPath } from "node:url"
import { defineProject } from "vitest/config"

export default defineProject({
  root: fileURLToPath(new URL(".", import.meta.url)),
  test: {
    name: "cli",
    include: ["test/**/*.test.ts"],
    globalSetup: ["../pg/test/harness/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
