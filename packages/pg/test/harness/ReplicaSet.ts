/**
 * A primary and streaming replicas for tests: each replica is a `pg_basebackup -R` copy with a slot of its own, so
 * kill / restart / stop of any member are the cluster's own methods. Replay can be paused on a replica (its WAL
 * receiver keeps receiving: the replica falls behind in what it shows), and a replica can be promoted.
 */
import { type PgCluster, startCluster, type StartClusterOptions } from "./PgCluster.js"

export interface ReplicaSet {
  readonly primary: PgCluster
  readonly replicas: ReadonlyArray<PgCluster>
  /** `pg_wal_replay_pause()`: the replica stops applying WAL (and shows a frozen snapshot) until resumed. */
  pauseReplay(replica: PgCluster): Promise<void>
  resumeReplay(replica: PgCluster): Promise<void>
  /** Ends recovery on the replica (`pg_promote()`, what `pg_ctl promote` does) and waits until it takes writes. */
  promote(replica: PgCluster): Promise<void>
  /** Waits until every running replica has replayed everything the primary has written so far. */
  caughtUp(timeoutMs?: number): Promise<void>
  destroy(): Promise<void>
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export const startReplicaSet = async (
  opts: StartClusterOptions & { readonly replicas?: number } = {}
): Promise<ReplicaSet> => {
  const name = opts.name ?? "rs"
  const primary = await startCluster({ ...opts, name: `${name}_p` })
  const replicas: Array<PgCluster> = []
  const set: ReplicaSet = {
    primary,
    replicas,
    pauseReplay: async (replica) => {
      await replica.query("SELECT pg_wal_replay_pause()")
    },
    resumeReplay: async (replica) => {
      await replica.query("SELECT pg_wal_replay_resume()")
    },
    promote: async (replica) => {
      await replica.query("SELECT pg_promote(true, 30)")
      for (let i = 0; i < 300; i++) {
        const [row] = await replica.query<{ r: boolean }>("SELECT pg_is_in_recovery() AS r")
        if (row?.r === false) return
        await sleep(20)
      }
      throw new Error(`replica ${replica.name} did not leave recovery`)
    },
    caughtUp: async (timeoutMs = 10_000) => {
      const [row] = await primary.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn")
      const deadline = Date.now() + timeoutMs
      for (const replica of replicas.filter((r) => r.running)) {
        for (;;) {
          const [r] = await replica.query<{ ok: boolean }>(
            "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false) AS ok",
            [row!.lsn]
          )
          if (r?.ok === true) break
          if (Date.now() > deadline) throw new Error(`replica ${replica.name} did not catch up with ${row!.lsn}`)
          await sleep(10)
        }
      }
    },
    destroy: async () => {
      await Promise.allSettled(replicas.map((r) => r.destroy()))
      await primary.destroy()
    }
  }
  try {
    for (let i = 0; i < (opts.replicas ?? 2); i++) {
      replicas.push(await startCluster({ ...opts, name: `${name}_r${i + 1}`, replicaOf: primary }))
    }
    await set.caughtUp(30_000)
    return set
  } catch (e) {
    await set.destroy().catch(() => {})
    throw e
  }
}
