import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type ReplicaSet, startReplicaSet } from "./harness/ReplicaSet.js"

describe("test harness: a primary and two streaming replicas", () => {
  let rs: ReplicaSet
  beforeAll(async () => {
    rs = await startReplicaSet({ name: "hrs" })
  }, 60_000)
  afterAll(() => rs?.destroy())

  const count = async (url: { query: ReplicaSet["primary"]["query"] }) =>
    Number((await url.query<{ n: string }>("SELECT count(*) AS n FROM h"))[0]!.n)

  it("streams writes to both replicas, which are in recovery and refuse writes", async () => {
    await rs.primary.query("CREATE TABLE h (x int)")
    await rs.primary.query("INSERT INTO h VALUES (1)")
    await rs.caughtUp()
    for (const r of rs.replicas) {
      expect(await count(r)).toBe(1)
      expect((await r.query<{ r: boolean }>("SELECT pg_is_in_recovery() AS r"))[0]!.r).toBe(true)
      await expect(r.query("INSERT INTO h VALUES (2)")).rejects.toThrow(/read-only/)
    }
    expect(new Set([rs.primary.port, ...rs.replicas.map((r) => r.port)]).size).toBe(3)
  })

  it("pauses and resumes replay on one replica", async () => {
    const [r1, r2] = rs.replicas
    await rs.pauseReplay(r1!)
    await rs.primary.query("INSERT INTO h VALUES (3)")
    await expect(rs.caughtUp(500)).rejects.toThrow(/did not catch up/)
    expect(await count(r1!)).toBe(1)
    expect(await count(r2!)).toBe(2)
    await rs.resumeReplay(r1!)
    await rs.caughtUp()
    expect(await count(r1!)).toBe(2)
  })

  it("kills a replica and restarts it; it catches up on what it missed", async () => {
    const r2 = rs.replicas[1]!
    await r2.kill()
    expect(r2.running).toBe(false)
    await rs.primary.query("INSERT INTO h VALUES (4)")
    await r2.start()
    await rs.caughtUp()
    expect(await count(r2)).toBe(3)
  })

  it("promotes a replica: it leaves recovery and takes writes", async () => {
    const r2 = rs.replicas[1]!
    await rs.promote(r2)
    await r2.query("INSERT INTO h VALUES (5)")
    expect(await count(r2)).toBe(4)
    expect(await count(rs.primary)).toBe(3)
  })
})
