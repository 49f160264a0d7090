/// <reference path="./provided.d.ts" />
import type { TestProject } from "vitest/node"
import { pgBinDir, startCluster } from "./PgCluster.js"

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const fromEnv = process.env["PG_URL"]
  if (fromEnv !== undefined && fromEnv !== "") {
    let bin = ""
    try {
      bin = pgBinDir()
    } catch {
      // tests that start their own clusters will report it
    }
    project.provide("pgUrl", fromEnv)
    project.provide("pgBin", bin)
    return async () => {}
  }
  const cluster = await startCluster({ name: "suite" })
  project.provide("pgUrl", cluster.url)
  project.provide("pgBin", cluster.binDir)
  return () => cluster.destroy()
}
