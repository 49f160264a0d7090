/**
 * Throwaway PostgreSQL clusters and PgBouncer instances for tests.
 *
 * Every server runs under a small perl supervisor (perl-base is always present on Debian) that
 * - is a child subreaper: when the postmaster is SIGKILLed its orphaned backends are reparented to it and reaped,
 *   so the supervisor exits exactly when the whole process tree is gone (no zombies, no guessing);
 * - shuts the server down (and removes its temp dir) if the Node process that started it dies without cleaning up.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { promisify } from "node:util"
import pg from "pg"

export type StopMode = "fast" | "immediate"

export interface StartClusterOptions {
  /** Shown in `ps` (cluster_name) and in the temp dir name. */
  readonly name?: string
  /** Extra postgresql.conf settings; they override the defaults except port, listen and socket settings. */
  readonly settings?: Record<string, string>
  /** Also start a PgBouncer (transaction mode) in front of the cluster; destroy() stops it. */
  readonly pgbouncer?: boolean
  /** Deadline for each start, in ms (default 30000). */
  readonly timeoutMs?: number
  /**
   * Make a streaming replica of this (running) primary instead of a fresh cluster: `pg_basebackup -R -X stream`
   * with a replication slot of its own, so the primary keeps the WAL the replica has not received yet.
   */
  readonly replicaOf?: PgCluster
}

export interface PgCluster {
  readonly name: string
  readonly host: "127.0.0.1"
  readonly port: number
  /** postgres://postgres@127.0.0.1:port/postgres */
  readonly url: string
  readonly baseDir: string
  readonly dataDir: string
  readonly socketDir: string
  readonly logFile: string
  readonly binDir: string
  readonly pgbouncer: PgBouncer | undefined
  readonly running: boolean
  /** Postmaster pid while running. */
  readonly pid: number | undefined
  /** Runs one statement on a short-lived connection (simple protocol when no params are given). */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(
    sql: string,
    params?: ReadonlyArray<unknown>
  ): Promise<R[]>
  logTail(lines?: number): string
  /** Shuts down and waits until every server process has exited. */
  stop(mode?: StopMode): Promise<void>
  /**
   * SIGKILLs the postmaster and waits until all its children have exited. By default the orphaned children are
   * SIGKILLed too (like a host crash); `orphans: "wait"` lets them notice the postmaster's death on their own, as
   * PostgreSQL backends do at their next wait (a busy query runs on; they are SIGKILLed after 10 s).
   */
  kill(opts?: KillOptions): Promise<void>
  /** Starts on the same data dir and port; resolves once a real connection runs SELECT 1. */
  start(): Promise<void>
  restart(mode?: StopMode): Promise<void>
  /** Stops the PgBouncer and the cluster (immediate) and removes the temp dir. */
  destroy(): Promise<void>
}

export interface KillOptions {
  readonly orphans?: "kill" | "wait"
}

export interface StartPgBouncerOptions {
  /** Extra [pgbouncer] settings, overriding the defaults. */
  readonly settings?: Record<string, string>
  readonly timeoutMs?: number
}

export interface PgBouncer {
  readonly host: "127.0.0.1"
  readonly port: number
  /** postgres://postgres@127.0.0.1:port/postgres; database `pgbouncer` is the admin console. */
  readonly url: string
  readonly dir: string
  readonly logFile: string
  readonly pid: number | undefined
  logTail(lines?: number): string
  /** Stops it, waits for the exit and removes its temp dir. */
  stop(): Promise<void>
}

const HOST = "127.0.0.1"
const execFileAsync = promisify(execFile)

// ---------------------------------------------------------------------------------------------------------------------
// Binaries and users

/** The PostgreSQL bin directory: $PG_BIN, else the newest /usr/lib/postgresql/<version>/bin. */
export const pgBinDir = (): string => {
  const fromEnv = process.env["PG_BIN"]
  if (fromEnv !== undefined && fromEnv !== "") {
    if (!fs.existsSync(path.join(fromEnv, "postgres"))) throw new Error(`PG_BIN=${fromEnv} has no postgres binary`)
    return fromEnv
  }
  const root = "/usr/lib/postgresql"
  const versions = (fs.existsSync(root) ? fs.readdirSync(root) : []).filter(
    (v) => /^\d+(\.\d+)?$/.test(v) && fs.existsSync(path.join(root, v, "bin", "postgres"))
  )
  versions.sort((a, b) => Number(b) - Number(a))
  const newest = versions[0]
  if (newest === undefined) throw new Error(`no PostgreSQL found: set PG_BIN or install it under ${root}/<version>/bin`)
  return path.join(root, newest, "bin")
}

const isRoot = (): boolean => process.getuid?.() === 0

let pgUser: { uid: number; gid: number } | undefined
const postgresUser = (): { uid: number; gid: number } => {
  if (pgUser === undefined) {
    try {
      const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim())
      const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim())
      pgUser = { uid, gid }
    } catch {
      throw new Error("running as root, but there is no `postgres` OS user to run PostgreSQL/PgBouncer as")
    }
  }
  return pgUser
}

const chownToPostgres = (...paths: ReadonlyArray<string>): void => {
  if (!isRoot()) return
  const { uid, gid } = postgresUser()
  for (const p of paths) fs.chownSync(p, uid, gid)
}

/**
 * initdb, postgres and pgbouncer refuse root. setpriv execs in place, so the supervisor's child is the program itself;
 * `runuser -u postgres --` would stay in between as a parent that does not pass every signal on.
 */
const dropRootPrefix = (): ReadonlyArray<string> =>
  isRoot() ? ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] : []

// ---------------------------------------------------------------------------------------------------------------------
// Small utilities

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const sleepSync = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** A port that was free a moment ago (bind port 0, read it, close). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.once("error", reject)
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

const slug = (s: string): string => s.replace(/[^A-Za-z0-9_]/g, "_").slice(0, 16)

/** Alive and not a zombie. */
const alive = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    if (fs.existsSync("/proc/self/stat")) return false
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  }
}

const childrenOf = (ppid: number): Array<number> => {
  const result: Array<number> = []
  let entries: Array<string>
  try {
    entries = fs.readdirSync("/proc")
  } catch {
    return result
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (Number(fields[1]) === ppid) result.push(Number(entry))
    } catch {
      // exited meanwhile
    }
  }
  return result
}

const trySignal = (pid: number, signal: NodeJS.Signals): void => {
  try {
    process.kill(pid, signal)
  } catch {
    // already gone
  }
}

const tail = (file: string, lines: number): string => {
  try {
    const fd = fs.openSync(file, "r")
    try {
      const size = fs.fstatSync(fd).size
      const length = Math.min(size, 64 * 1024)
      const buf = Buffer.alloc(length)
      fs.readSync(fd, buf, 0, length, size - length)
      return buf.toString("utf8").split("\n").slice(-lines - 1).join("\n")
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    return `(no log at ${file})`
  }
}

const quoteConf = (value: string): string => `'${value.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`

const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** Connects, runs SELECT 1 and disconnects; rejects with the connection error. */
const probe = async (url: string, timeoutMs: number): Promise<void> => {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs })
  client.on("error", () => {})
  try {
    await client.connect()
    await client.query("SELECT 1")
  } finally {
    await client.end().catch(() => {})
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Supervisor and process-exit cleanup

const PRCTL_NR: Partial<Record<NodeJS.Architecture, number>> = {
  x64: 157,
  arm64: 167,
  riscv64: 167,
  loong64: 167,
  ia32: 172,
  arm: 172,
  s390x: 172,
  ppc64: 171
}

// argv: prctl syscall number, signal to send if orphaned, dir to remove if orphaned, command...
// Prints the server pid on stdout; exits with the server's status once no descendant is left.
const SUPERVISOR = `
use strict;
my ($nr, $sig, $dir, @cmd) = @ARGV;
$0 = "pg-harness-supervisor " . join(" ", @cmd);
if ($nr <= 0 || syscall($nr + 0, 36, 1, 0, 0, 0) != 0) { warn "harness: no PR_SET_CHILD_SUBREAPER: $!\\n" }
my $ppid = getppid();
my $pid = fork();
die "harness: fork: $!\\n" unless defined $pid;
if ($pid == 0) { open(STDOUT, ">&", \\*STDERR); exec { $cmd[0] } @cmd or die "harness: exec $cmd[0]: $!\\n" }
$| = 1;
print "$pid\\n";
close(STDOUT);
my $orphaned = 0;
$SIG{ALRM} = sub {
  if (!$orphaned && getppid() != $ppid) { $orphaned = time; kill $sig, $pid }
  elsif ($orphaned && time - $orphaned >= 10) { kill "KILL", $pid }
  alarm 1;
};
alarm 1;
my $status = 0;
while ((my $w = wait()) != -1) { $status = $? if $w == $pid }
system("rm", "-rf", $dir) if $orphaned && $dir ne "";
exit($status & 127 ? 128 + ($status & 127) : $status >> 8);
`

interface Supervised {
  readonly child: ChildProcess
  /** The server's own pid (the supervisor's child). */
  readonly pid: number
  readonly exited: Promise<void>
  readonly hasExited: () => boolean
  readonly exitCode: () => number | null
}

interface Live {
  readonly pid: number
  readonly signal: NodeJS.Signals
}
const liveServers = new Set<Live>()
const tempDirs = new Set<string>()
let exitHookInstalled = false

// Best effort and synchronous: 'exit' listeners cannot await. Signals and SIGKILL of Node are the supervisor's job.
const cleanupOnExit = (): void => {
  for (const s of liveServers) trySignal(s.pid, s.signal)
  const deadline = Date.now() + 5000
  while ([...liveServers].some((s) => alive(s.pid)) && Date.now() < deadline) sleepSync(20)
  for (const s of liveServers) if (alive(s.pid)) trySignal(s.pid, "SIGKILL")
  for (const dir of tempDirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true })
    } catch {
      // best effort
    }
  }
}

const installExitHook = (): void => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on("exit", cleanupOnExit)
}

const makeTempDir = (prefix: string): string => {
  installExitHook()
  // Short base under /tmp: unix socket paths must stay below 107 bytes.
  const dir = fs.mkdtempSync(path.join("/tmp", prefix))
  tempDirs.add(dir)
  chownToPostgres(dir)
  return dir
}

const removeTempDir = (dir: string): void => {
  fs.rmSync(dir, { recursive: true, force: true })
  tempDirs.delete(dir)
}

const supervise = async (
  command: ReadonlyArray<string>,
  opts: { logFile: string; orphanSignal: NodeJS.Signals; orphanDir: string }
): Promise<Supervised> => {
  installExitHook()
  const logFd = fs.openSync(opts.logFile, "a")
  let child: ChildProcess
  try {
    chownToPostgres(opts.logFile)
    const nr = PRCTL_NR[process.arch] ?? 0
    const signal = opts.orphanSignal.replace(/^SIG/, "")
    child = spawn("perl", ["-e", SUPERVISOR, String(nr), signal, opts.orphanDir, ...dropRootPrefix(), ...command], {
      stdio: ["ignore", "pipe", logFd],
      // own session: a Ctrl-C in the terminal must not reach the servers before the harness does
      detached: true
    })
  } finally {
    fs.closeSync(logFd)
  }
  let done = false
  let live: Live | undefined
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      done = true
      if (live !== undefined) liveServers.delete(live)
      resolve()
    })
    child.once("error", () => {
      done = true
      resolve()
    })
  })
  const pid = await new Promise<number>((resolve, reject) => {
    let out = ""
    child.stdout!.setEncoding("utf8")
    child.stdout!.on("data", (chunk: string) => {
      out += chunk
      const line = out.split("\n")[0]
      if (out.includes("\n") && line !== undefined) resolve(Number(line))
    })
    child.once("error", (e) => reject(new Error(`cannot run perl (the harness supervisor): ${e.message}`)))
    void exited.then(() => reject(new Error(`${path.basename(command[0] ?? "")} exited at once`)))
  })
  if (!done) {
    live = { pid, signal: opts.orphanSignal }
    liveServers.add(live)
  }
  return { child, pid, exited, hasExited: () => done, exitCode: () => child.exitCode }
}

/** Resolves once `s` is gone; escalates with the given signals after each `stepMs` (a ref'd timer keeps Node up). */
const waitExit = async (s: Supervised, stepMs: number, escalate: ReadonlyArray<NodeJS.Signals>): Promise<void> => {
  for (const signal of [...escalate, undefined]) {
    let timer: NodeJS.Timeout | undefined
    const timedOut = await Promise.race([
      s.exited.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), stepMs)))
    ])
    clearTimeout(timer)
    if (!timedOut) return
    if (signal === undefined) throw new Error(`process ${s.pid} did not exit`)
    trySignal(s.pid, signal)
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// PostgreSQL

class Cluster implements PgCluster {
  readonly host = HOST
  port = 0
  readonly dataDir: string
  readonly socketDir: string
  readonly logFile: string
  pgbouncer: PgBouncer | undefined = undefined
  private server: Supervised | undefined = undefined
  private baseConf = ""
  private destroyed = false

  constructor(
    readonly name: string,
    readonly baseDir: string,
    readonly binDir: string,
    private readonly settings: Record<string, string>,
    private readonly timeoutMs: number
  ) {
    this.dataDir = path.join(baseDir, "data")
    this.socketDir = path.join(baseDir, "s")
    this.logFile = path.join(this.dataDir, "server.log")
  }

  get url(): string {
    return `postgres://postgres@${HOST}:${this.port}/postgres`
  }

  get running(): boolean {
    return this.server !== undefined && !this.server.hasExited()
  }

  get pid(): number | undefined {
    return this.running ? this.server?.pid : undefined
  }

  async init(replicaOf?: PgCluster): Promise<void> {
    fs.mkdirSync(this.socketDir)
    chownToPostgres(this.socketDir)
    if (Buffer.byteLength(path.join(this.socketDir, ".s.PGSQL.65535")) >= 107) {
      throw new Error(`socket dir ${this.socketDir} is too long for a unix socket path`)
    }
    if (replicaOf !== undefined) await this.baseBackup(replicaOf)
    else await this.initdb()
    this.baseConf = fs.readFileSync(path.join(this.dataDir, "postgresql.conf"), "utf8")
  }

  private async initdb(): Promise<void> {
    const initdb = await supervise(
      [
        path.join(this.binDir, "initdb"),
        "-D",
        this.dataDir,
        "--auth=trust",
        "--no-sync",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-instructions"
      ],
      { logFile: path.join(this.baseDir, "initdb.log"), orphanSignal: "SIGTERM", orphanDir: this.baseDir }
    )
    await initdb.exited
    if (initdb.exitCode() !== 0) {
      throw new Error(`initdb failed (exit ${initdb.exitCode()})\n${tail(path.join(this.baseDir, "initdb.log"), 40)}`)
    }
  }

  private async baseBackup(primary: PgCluster): Promise<void> {
    const log = path.join(this.baseDir, "basebackup.log")
    const backup = await supervise(
      [
        path.join(this.binDir, "pg_basebackup"),
        "-d",
        primary.url,
        "-D",
        this.dataDir,
        "-R",
        "-X",
        "stream",
        "-c",
        "fast",
        "-C",
        "-S",
        `slot_${this.name}_${path.basename(this.baseDir).replace(/[^A-Za-z0-9]/g, "").toLowerCase()}`.slice(0, 60)
      ],
      { logFile: log, orphanSignal: "SIGTERM", orphanDir: this.baseDir }
    )
    await backup.exited
    if (backup.exitCode() !== 0) throw new Error(`pg_basebackup failed (exit ${backup.exitCode()})\n${tail(log, 40)}`)
    // the copy brings the primary's server log along
    fs.rmSync(this.logFile, { force: true })
  }

  private writeConf(): void {
    const settings: Record<string, string> = {
      cluster_name: this.name,
      fsync: "off",
      full_page_writes: "off",
      max_connections: "100",
      wal_retrieve_retry_interval: "100ms",
      logging_collector: "off",
      ...this.settings,
      listen_addresses: HOST,
      port: String(this.port),
      unix_socket_directories: this.socketDir
    }
    const lines = Object.entries(settings).map(([k, v]) => `${k} = ${quoteConf(v)}`)
    fs.writeFileSync(
      path.join(this.dataDir, "postgresql.conf"),
      `${this.baseConf}\n# test harness\n${lines.join("\n")}\n`
    )
  }

  /** First start: picks a free port, and another one if it was taken in between. */
  async firstStart(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.port = await freePort()
      this.writeConf()
      try {
        await this.start()
        return
      } catch (e) {
        if (attempt >= 3 || !/could not bind|already in use/i.test(errorMessage(e))) throw e
      }
    }
  }

  async start(): Promise<void> {
    if (this.destroyed) throw new Error(`cluster ${this.name} was destroyed`)
    if (this.running) return
    const logOffset = fs.existsSync(this.logFile) ? fs.statSync(this.logFile).size : 0
    const server = await supervise([path.join(this.binDir, "postgres"), "-D", this.dataDir], {
      logFile: this.logFile,
      orphanSignal: "SIGQUIT",
      orphanDir: this.baseDir
    })
    this.server = server
    const lastError = await untilReady(server, this.url, this.timeoutMs)
    if (lastError === undefined) return
    if (!server.hasExited()) {
      trySignal(server.pid, "SIGQUIT")
      await waitExit(server, 5000, ["SIGKILL"]).catch(() => {})
    }
    const log = this.newLog(logOffset)
    throw new Error(
      `PostgreSQL ${this.name} did not start on port ${this.port} ` +
        `(${server.hasExited() ? "server exited" : "timed out"}; last error: ${errorMessage(lastError)})\n` +
        `--- ${this.logFile} ---\n${log}`
    )
  }

  private newLog(offset: number): string {
    const all = tail(this.logFile, 40)
    try {
      const size = fs.statSync(this.logFile).size
      if (size - offset < 16 * 1024) return fs.readFileSync(this.logFile, "utf8").slice(offset) || all
    } catch {
      // fall through
    }
    return all
  }

  async stop(mode: StopMode = "fast"): Promise<void> {
    const server = this.server
    if (server === undefined || server.hasExited()) return
    trySignal(server.pid, mode === "fast" ? "SIGINT" : "SIGQUIT")
    await waitExit(server, mode === "fast" ? 30_000 : 10_000, ["SIGQUIT", "SIGKILL"])
  }

  async kill(opts: KillOptions = {}): Promise<void> {
    const server = this.server
    if (server === undefined || server.hasExited()) return
    // Listed first in case the supervisor could not become a subreaper (then they are not its children).
    const children = childrenOf(server.pid)
    trySignal(server.pid, "SIGKILL")
    // Orphaned backends are now children of the supervisor; a busy one only notices at its next wait.
    const killOrphans = () => {
      const supervisor = server.child.pid
      const orphans = supervisor === undefined ? [] : childrenOf(supervisor)
      for (const pid of [...orphans, ...children.filter(alive)]) trySignal(pid, "SIGKILL")
    }
    if (opts.orphans !== "wait") killOrphans()
    const deadline = Date.now() + 30_000
    for (;;) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([server.exited, new Promise((resolve) => (timer = setTimeout(resolve, 50)))])
      clearTimeout(timer)
      if (server.hasExited() && !children.some(alive)) return
      if (Date.now() > deadline) throw new Error(`processes of killed postmaster ${server.pid} did not exit`)
      if (opts.orphans !== "wait" || Date.now() > deadline - 20_000) killOrphans()
    }
  }

  async restart(mode: StopMode = "fast"): Promise<void> {
    await this.stop(mode)
    await this.start()
  }

  async query<R extends pg.QueryResultRow = Record<string, unknown>>(
    sql: string,
    params?: ReadonlyArray<unknown>
  ): Promise<R[]> {
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 10_000 })
    client.on("error", () => {})
    try {
      await client.connect()
      const result = params === undefined ? await client.query<R>(sql) : await client.query<R>(sql, [...params])
      return result.rows
    } finally {
      await client.end().catch(() => {})
    }
  }

  logTail(lines = 40): string {
    return tail(this.logFile, lines)
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return
    this.destroyed = true
    try {
      await this.pgbouncer?.stop()
    } finally {
      await this.stop("immediate")
      removeTempDir(this.baseDir)
    }
  }
}

/**
 * Probes `url` until a real query runs (resolves `undefined`), the server exits, or `timeoutMs` passes (resolves
 * the last error seen). Once ready, a forgotten server must not keep Node alive: the exit hook and the supervisor
 * clean up.
 */
const untilReady = async (server: Supervised, url: string, timeoutMs: number): Promise<unknown> => {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown = new Error("the server exited before it accepted a connection")
  for (;;) {
    if (server.hasExited()) return lastError
    try {
      await probe(url, Math.max(500, Math.min(2000, deadline - Date.now())))
      server.child.unref()
      return undefined
    } catch (e) {
      lastError = e
    }
    if (Date.now() >= deadline) return lastError
    await sleep(25)
  }
}

export const startCluster = async (opts: StartClusterOptions = {}): Promise<PgCluster> => {
  const binDir = pgBinDir()
  const name = slug(opts.name ?? "cp")
  const baseDir = makeTempDir(`cp-${name}-`)
  const cluster = new Cluster(name, baseDir, binDir, opts.settings ?? {}, opts.timeoutMs ?? 30_000)
  try {
    await cluster.init(opts.replicaOf)
    await cluster.firstStart()
    if (opts.pgbouncer === true) {
      cluster.pgbouncer = await startPgBouncer(
        { port: cluster.port },
        opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }
      )
    }
    return cluster
  } catch (e) {
    await cluster.destroy().catch(() => {})
    throw e
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// PgBouncer

const findOnPath = (name: string): string | undefined => {
  const dirs = [...(process.env["PATH"] ?? "").split(":"), "/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
  for (const dir of dirs) {
    if (dir === "") continue
    const candidate = path.join(dir, name)
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      return candidate
    } catch {
      // next
    }
  }
  return undefined
}

let pgbouncerBinary: Promise<string> | undefined

/** $PGBOUNCER_BIN, else pgbouncer on PATH, else `apt-get install -y pgbouncer` (root only; once per process). */
export const ensurePgBouncer = (): Promise<string> => {
  pgbouncerBinary ??= (async () => {
    const fromEnv = process.env["PGBOUNCER_BIN"]
    if (fromEnv !== undefined && fromEnv !== "") return fromEnv
    const found = findOnPath("pgbouncer")
    if (found !== undefined) return found
    if (!isRoot()) throw new Error("pgbouncer is not installed (apt-get install -y pgbouncer, or set PGBOUNCER_BIN)")
    // the lock timeout lets parallel test processes queue behind each other instead of failing
    const apt = (...args: Array<string>) =>
      execFileAsync("apt-get", ["-o", "DPkg::Lock::Timeout=300", ...args], {
        env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
        maxBuffer: 64 * 1024 * 1024
      })
    try {
      await apt("install", "-y", "--no-install-recommends", "pgbouncer")
    } catch {
      await apt("update")
      await apt("install", "-y", "--no-install-recommends", "pgbouncer")
    }
    const installed = findOnPath("pgbouncer")
    if (installed === undefined) throw new Error("apt-get installed pgbouncer but the binary is not on PATH")
    return installed
  })()
  pgbouncerBinary.catch(() => (pgbouncerBinary = undefined))
  return pgbouncerBinary
}

class Bouncer implements PgBouncer {
  readonly host = HOST
  port = 0
  readonly logFile: string
  private server: Supervised | undefined = undefined
  private stopped = false

  constructor(readonly dir: string) {
    this.logFile = path.join(dir, "pgbouncer.log")
  }

  get url(): string {
    return `postgres://postgres@${HOST}:${this.port}/postgres`
  }

  get pid(): number | undefined {
    return this.server !== undefined && !this.server.hasExited() ? this.server.pid : undefined
  }

  async start(
    binary: string,
    upstream: { readonly host: string; readonly port: number },
    opts: StartPgBouncerOptions
  ): Promise<void> {
    const userlist = path.join(this.dir, "userlist.txt")
    fs.writeFileSync(userlist, `"postgres" ""\n`)
    chownToPostgres(userlist)
    const ini = path.join(this.dir, "pgbouncer.ini")
    for (let attempt = 1; ; attempt++) {
      this.port = await freePort()
      const settings: Record<string, string> = {
        pool_mode: "transaction",
        auth_type: "trust",
        auth_file: userlist,
        admin_users: "postgres",
        default_pool_size: "20",
        max_client_conn: "500",
        ignore_startup_parameters: "extra_float_digits,options",
        // default 15 s: after an upstream restart the pool would stay unusable that long
        server_login_retry: "1",
        ...opts.settings,
        listen_addr: HOST,
        listen_port: String(this.port),
        unix_socket_dir: this.dir
      }
      const lines = Object.entries(settings).map(([k, v]) => `${k} = ${v}`)
      fs.writeFileSync(
        ini,
        `[databases]\n* = host=${upstream.host} port=${upstream.port}\n\n[pgbouncer]\n${lines.join("\n")}\n`
      )
      chownToPostgres(ini)
      try {
        await this.run(binary, ini, opts.timeoutMs ?? 30_000)
        return
      } catch (e) {
        if (attempt >= 3 || !/already in use|could not bind/i.test(errorMessage(e))) throw e
      }
    }
  }

  private async run(binary: string, ini: string, timeoutMs: number): Promise<void> {
    const server = await supervise([binary, ini], {
      logFile: this.logFile,
      orphanSignal: "SIGKILL",
      orphanDir: this.dir
    })
    this.server = server
    const lastError = await untilReady(server, this.url, timeoutMs)
    if (lastError === undefined) return
    trySignal(server.pid, "SIGKILL")
    await waitExit(server, 5000, []).catch(() => {})
    throw new Error(
      `PgBouncer did not start on port ${this.port} ` +
        `(${server.hasExited() ? "exited" : "timed out"}; last error: ${errorMessage(lastError)})\n` +
        `--- ${this.logFile} ---\n${this.logTail()}`
    )
  }

  logTail(lines = 40): string {
    return tail(this.logFile, lines)
  }

  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    const server = this.server
    if (server !== undefined && !server.hasExited()) {
      // SIGTERM is an immediate shutdown up to 1.22 but waits for clients since 1.23, hence the quick SIGKILL
      trySignal(server.pid, "SIGTERM")
      await waitExit(server, 1000, ["SIGKILL"])
    }
    removeTempDir(this.dir)
  }
}

/** Starts PgBouncer in transaction mode in front of `upstream` (a cluster, `{ port }` or a port). */
export const startPgBouncer = async (
  upstream: { readonly port: number; readonly host?: string } | number,
  opts: StartPgBouncerOptions = {}
): Promise<PgBouncer> => {
  const target = typeof upstream === "number"
    ? { host: HOST, port: upstream }
    : { host: upstream.host ?? HOST, port: upstream.port }
  const binary = await ensurePgBouncer()
  const bouncer = new Bouncer(makeTempDir("cpb-"))
  try {
    await bouncer.start(binary, target, opts)
    return bouncer
  } catch (e) {
    await bouncer.stop().catch(() => {})
    throw e
  }
}
