import { fileURLToPath } from "node:url"
import { defineProject } from "vitest/config"

export default defineProject({
  root: fileURLToPath(new URL(".", import.meta.url)),
  test: {
    name: "tcp",
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
