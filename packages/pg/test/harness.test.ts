/// <reference path="./harness/provided.d.ts" />
import * as fs from "node:fs"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest"
import { type PgCluster, startCluster, startPgBouncer } from "./harness/PgCluster.js"

const selectOne = async (url: string): Promise<unknown> => {
  const client = new pg.Client({ connectionString: url })
  client.on("error", () => {})
  await client.connect()
  try {
    return (await client.query<{ one: number }>("SELECT 1 AS one")).rows[0]?.one
  } finally {
    await client.end()
  }
}

const aliveOnLinux = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat[stat.lastIndexOf(")") + 2] !== "Z"
  } catch {
    return false
  }
}

const childrenOnLinux = (ppid: number): Array<number> =>
  fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e)).map(Number).filter((pid) => {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
      return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === ppid
    } catch {
      return false
    }
  })

describe("PostgreSQL test harness", () => {
  it("the provided pgUrl answers SELECT 1", async () => {
    expect(await selectOne(inject("pgUrl"))).toBe(1)
  })

  describe("an own cluster", () => {
    let cluster: PgCluster

    beforeAll(async () => {
      cluster = await startCluster({ name: "smoke", pgbouncer: true, settings: { max_connections: "30" } })
    })

    afterAll(async () => {
      await cluster?.destroy()
    })

    it("starts with the requested settings", async () => {
      expect(cluster.url).toBe(`postgres://postgres@127.0.0.1:${cluster.port}/postgres`)
      const rows = await cluster.query<{ setting: string }>(
        "SELECT setting FROM pg_settings WHERE name = ANY($1) ORDER BY name",
        [["fsync", "max_connections"]]
      )
      expect(rows.map((r) => r.setting)).toEqual(["off", "30"])
    })

    it("kill() leaves no process behind; start() brings it back on the same port", async () => {
      await cluster.query("CREATE TABLE t (id int)")
      await cluster.query("INSERT INTO t VALUES (1)")
      const port = cluster.port
      // a backend busy in a query would outlive its postmaster for its whole duration
      const busy = new pg.Client({ connectionString: cluster.url })
      busy.on("error", () => {})
      await busy.connect()
      const sleeping = busy.query("SELECT pg_sleep(60)").then(() => "done", (e: NodeJS.ErrnoException) => e.code)
      const processes = [cluster.pid!, ...childrenOnLinux(cluster.pid!)]
      expect(processes.length).toBeGreaterThan(4)
      await cluster.kill()
      expect(cluster.running).toBe(false)
      expect(processes.filter(aliveOnLinux)).toEqual([])
      expect(await sleeping).not.toBe("done")
      await busy.end().catch(() => {})
      await expect(selectOne(cluster.url)).rejects.toMatchObject({ code: "ECONNREFUSED" })
      await cluster.start()
      expect(cluster.port).toBe(port)
      expect(await cluster.query("SELECT count(*)::int AS n FROM t")).toEqual([{ n: 1 }])
    })

    it("stop('immediate') then start() keeps committed rows", async () => {
      await cluster.query("INSERT INTO t VALUES (2)")
      await cluster.stop("immediate")
      await expect(selectOne(cluster.url)).rejects.toMatchObject({ code: "ECONNREFUSED" })
      await cluster.start()
      expect(await cluster.query("SELECT count(*)::int AS n FROM t")).toEqual([{ n: 2 }])
    })

    it("pgbouncer in transaction mode forwards queries, also after the upstream restarted", async () => {
      const bouncer = cluster.pgbouncer!
      expect(await selectOne(bouncer.url)).toBe(1)
      const admin = new pg.Client({ connectionString: bouncer.url.replace(/\/postgres$/, "/pgbouncer") })
      await admin.connect()
      try {
        const config = await admin.query<{ key: string; value: string }>("SHOW CONFIG")
        expect(config.rows.find((r) => r.key === "pool_mode")?.value).toBe("transaction")
      } finally {
        await admin.end()
      }
    })
  })

  it("startPgBouncer() in front of the suite cluster, stop() removes it", async () => {
    const port = Number(new URL(inject("pgUrl")).port || 5432)
    const bouncer = await startPgBouncer(port)
    try {
      expect(await selectOne(bouncer.url)).toBe(1)
    } finally {
      await bouncer.stop()
    }
    await expect(selectOne(bouncer.url)).rejects.toMatchObject({ code: "ECONNREFUSED" })
  })
})
