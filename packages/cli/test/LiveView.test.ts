import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { bin, repoRoot } from "./utils.js"

const hasTmux = (() => {
  try {
    execFileSync("tmux", ["-V"])
    return true
  } catch {
    return false
  }
})()

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe.skipIf(!hasTmux)("the live view, in a real terminal (tmux)", () => {
  it("redraws in place a few times a second, its numbers moving, then prints the summary", async () => {
    const socket = `cp-cli-test-${process.pid}` // a tmux server of this test's own
    const tmux = (...args: Array<string>) => execFileSync("tmux", ["-L", socket, ...args], { encoding: "utf8" })
    const command = `cd ${repoRoot} && ${process.execPath} ${bin} load --duration 4s --concurrency 8; sleep 60`
    tmux("new-session", "-d", "-s", "live", "-x", "120", "-y", "40", command)
    try {
      const screens: Array<string> = []
      const deadline = Date.now() + 45_000
      while (Date.now() < deadline) {
        const screen = tmux("capture-pane", "-p", "-t", "live")
        screens.push(screen)
        if (screen.includes("| statements")) break
        await sleep(300)
      }
      const live = screens.filter((s) => s.includes("throughput") && !s.includes("| statements"))
      const elapsed = live.map((s) => Number(/([\d.]+)s \/ 4s/.exec(s)?.[1]))
      const throughput = live.map((s) => /throughput +([\d,]+) ops\/s/.exec(s)?.[1])
      assert.isAtLeast(live.length, 4, screens.join("\n----\n"))
      for (let i = 1; i < elapsed.length; i++) assert.isAtLeast(elapsed[i], elapsed[i - 1])
      assert.isAbove(new Set(elapsed).size, 3, `elapsed: ${elapsed}`)
      assert.isAbove(new Set(throughput).size, 1, `throughput: ${throughput}`)
      // drawn in place: one view on the screen, never a scrolling list of them
      for (const s of live) assert.strictEqual(s.split("throughput").length - 1, 1, s)
      const last = screens[screens.length - 1]
      assert.include(last, "| statements")
      assert.match(last, /pool wait +p50 +≤/)
      assert.match(last, /connections in use +\d+ +idle +\d+ +waiting +\d+/)
    } finally {
      tmux("kill-server")
    }
  })
  it("the first Ctrl-C ends the load early and still prints the summary; exit code 0", async () => {
    const socket = `cp-cli-test-${process.pid}-int`
    const tmux = (...args: Array<string>) => execFileSync("tmux", ["-L", socket, ...args], { encoding: "utf8" })
    const command = `cd ${repoRoot} && ${process.execPath} ${bin} load --duration 60s --concurrency 4; ` +
      "echo exit=$?; sleep 60"
    tmux("new-session", "-d", "-s", "int", "-x", "120", "-y", "40", command)
    try {
      const screen = async (until: (s: string) => boolean) => {
        const deadline = Date.now() + 30_000
        let s = ""
        while (Date.now() < deadline) {
          s = tmux("capture-pane", "-p", "-t", "int")
          if (until(s)) return s
          await sleep(200)
        }
        return s
      }
      const running = await screen((s) => /throughput +[1-9]/.test(s))
      assert.match(running, /throughput/)
      tmux("send-keys", "-t", "int", "C-c")
      const done = await screen((s) => s.includes("exit="))
      assert.include(done, "| statements")
      assert.include(done, "exit=0")
      const elapsed = Number(/([\d.]+)s \/ 60s/.exec(done)?.[1])
      assert.isBelow(elapsed, 60)
    } finally {
      tmux("kill-server")
    }
  })
})
