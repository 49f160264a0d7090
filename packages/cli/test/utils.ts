/// <reference path="./provided.d.ts" />
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

export const repoRoot = path.resolve(__dirname, "../../..")
export const bin = path.join(repoRoot, "packages/cli/bin/connection-pool.js")

export interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs the command as a user would (`connection-pool ARGS`), from the repo root. */
export const cli = (args: ReadonlyArray<string>, timeoutMs = 60_000): Promise<Result> =>
  new Promise((resolve) => {
    const options = { cwd: repoRoot, timeout: timeoutMs, env: { ...process.env, NO_COLOR: "1" } }
    execFile(process.execPath, [bin, ...args], options, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1
      resolve({ code, stdout, stderr })
    })
  })

/** JSON lines of `stdout`. */
export const jsonLines = (stdout: string): Array<Record<string, any>> =>
  stdout.split("\n").filter((line) => line.trim() !== "").map((line) => JSON.parse(line))

export const tempDir = (): string => fs.mkdtempSync(path.join(os.tmpdir(), "cp-cli-test-"))

/** A port nothing listens on. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

/** `url` with a password added (the throwaway cluster trusts every connection, so it is not checked). */
export const withPassword = (url: string, password: string): string => {
  const u = new URL(url)
  u.password = password
  return u.toString()
}

/** One error line: no stack trace, no secret. */
export const oneLine = (stderr: string): boolean => stderr.trim().split("\n").length === 1 && !/\n\s+at /.test(stderr)
