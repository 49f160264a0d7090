/**
 * TCP pools, 10 connections and 200 concurrent callers each looping for a fixed time, in one run:
 *
 * - HTTP/1.1 GET on keep-alive connections to a `node:http` server in a child process: our `TcpPool.exchange` with
 *   a minimal HTTP/1.1 response parser, undici's `Pool`, and Node's `http.Agent({ keepAlive: true })`;
 * - Redis `PING` to a redis-server of the bench's own: our `TcpPool.exchange` against a `generic-pool` of sockets,
 *   both with the same one-line reply reading, so that the pools are what differs; and two floors on effect's
 *   runtime, no pool features, over the generic-pool subject's sockets: a fair handoff with its state in plain
 *   fields, one `Effect.async` per request and the next request written from the reply's callback (what one
 *   Effect borrow and one fiber wake cost against a Promise); and the same with one `STM.commit` per acquire and
 *   one per release, the release committed inside the reply's callback through a `Runtime` (state in STM, one
 *   transaction per acquire and per release, through the STM driver).
 *
 * Reported per subject: requests/s, latency p50 / p99 (from asking for a connection to having the reply), the
 * fewest / most requests any one caller completed, and the bench process's CPU time (user + system, every thread)
 * per request: the servers run in processes of their own, so that is the client side's cost, which a loaded
 * machine disturbs far less than it disturbs requests/s. Then the ratios of each round, and their medians.
 * `TCP_SECONDS` (default 3) per run, `TCP_ROUNDS` (default 3), the subjects' order rotated each round, after one
 * unmeasured warm-up pass over every subject.
 */
import { Effect, Exit, Runtime, Scope, STM, TRef } from "effect"
import genericPool from "generic-pool"
import * as child from "node:child_process"
import * as http from "node:http"
import * as net from "node:net"
import { Pool } from "undici"
import { TcpPool } from "../packages/tcp/src/index.js"
import { redis } from "../packages/tcp/test/support/servers.js"
import type { Target } from "./common.js"
import {
  fairnessOf,
  gc,
  commitLine,
  machineLine,
  median,
  ms,
  nearestRank,
  positive,
  printSummary,
  progress,
  rate,
  rotate,
  times,
  versionOf
} from "./common.js"

const CONNECTIONS = 10
const CALLERS = 200
const WARMUP_MS = 500

const OURS_HTTP = "TcpPool.exchange HTTP/1.1 GET"
const UNDICI = "undici Pool"
const AGENT = "http.Agent keepAlive"
const OURS_REDIS = "TcpPool.exchange PING"
const GENERIC = "generic-pool of sockets"
const FLOOR = "floor: Effect.async, plain state"
const FLOOR_STM = "floor + 2 STM commits"

/** One run: what each caller completed before the deadline, and every latency. */
class Tally {
  stop = false
  wrong = 0
  readonly counts = new Uint32Array(CALLERS)
  private latencies = new Float64Array(1 << 18)
  n = 0
  constructor(readonly deadline: number) {}
  record(i: number, start: number, ok: boolean): void {
    const now = performance.now()
    if (now >= this.deadline) {
      this.stop = true
      return
    }
    this.counts[i]++
    if (!ok) this.wrong++
    if (this.n === this.latencies.length) {
      const grown = new Float64Array(this.n * 2)
      grown.set(this.latencies)
      this.latencies = grown
    }
    this.latencies[this.n++] = now - start
  }
  get all(): Float64Array {
    return this.latencies.subarray(0, this.n)
  }
}

interface Client {
  readonly run: (tally: Tally) => Promise<void>
  readonly close: () => Promise<void>
}

interface Subject {
  readonly name: string
  readonly open: () => Promise<Client>
}

/** `CALLERS` async loops of `call`. */
const promiseClient = (call: () => Promise<boolean>, close: () => Promise<void>): Client => ({
  run: async (tally) => {
    const caller = async (i: number) => {
      while (!tally.stop) {
        const start = performance.now()
        tally.record(i, start, await call())
      }
    }
    await Promise.all(Array.from({ length: CALLERS }, (_, i) => caller(i)))
  },
  close
})

/** Our pool, made in a scope of its own: `CALLERS` fibers looping `call`. */
const oursClient = async (
  options: TcpPool.Options,
  call: (pool: TcpPool.TcpPool) => Effect.Effect<boolean, unknown>
): Promise<Client> => {
  const scope = Effect.runSync(Scope.make())
  const pool = await Effect.runPromise(Scope.extend(TcpPool.make(options), scope))
  return effectClient(call(pool), () => Effect.runPromise(Scope.close(scope, Exit.void)))
}

/** `CALLERS` fibers looping `request`. */
const effectClient = (request: Effect.Effect<boolean, unknown>, close: () => Promise<void>): Client => {
  return {
    run: (tally) => {
      const caller = (i: number) =>
        Effect.suspend(() => {
          let start = 0
          return Effect.whileLoop({
            while: () => !tally.stop,
            body: () =>
              Effect.suspend(() => {
                start = performance.now()
                return request
              }),
            step: (ok) => tally.record(i, start, ok)
          })
        })
      return Effect.runPromise(
        Effect.forEach(Array.from({ length: CALLERS }, (_, i) => i), caller, {
          concurrency: "unbounded",
          discard: true
        })
      )
    },
    close
  }
}

const GET = Buffer.from("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
const HEAD_END = Buffer.from("\r\n\r\n")

/** A whole response with a content-length body: the body and the bytes it took, or `undefined` for more. */
const parseResponse = (data: Buffer) => {
  const end = data.indexOf(HEAD_END)
  if (end === -1) return undefined
  const length = Number(/\r\ncontent-length: *(\d+)/i.exec(data.toString("latin1", 0, end))?.[1] ?? 0)
  const total = end + 4 + length
  return data.length < total ? undefined : ([data.toString("utf8", end + 4, total), total] as const)
}

const httpSubjects = (port: number): ReadonlyArray<Subject> => [
  {
    name: OURS_HTTP,
    open: () =>
      oursClient({ maxConnectionsPerEndpoint: CONNECTIONS }, (pool) =>
        Effect.map(pool.exchange(`127.0.0.1:${port}`, GET, parseResponse), (body) => body === "ok"))
  },
  {
    name: UNDICI,
    open: async () => {
      const pool = new Pool(`http://127.0.0.1:${port}`, { connections: CONNECTIONS, pipelining: 1 })
      return promiseClient(async () => {
        const { body, statusCode } = await pool.request({ path: "/", method: "GET" })
        return (await body.text()) === "ok" && statusCode === 200
      }, () => pool.close())
    }
  },
  {
    name: AGENT,
    open: async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS })
      const call = () =>
        new Promise<boolean>((resolve, reject) => {
          http.get({ host: "127.0.0.1", port, path: "/", agent }, (res) => {
            let body = ""
            res.setEncoding("utf8")
            res.on("data", (d) => (body += d))
            res.on("end", () => resolve(body === "ok"))
          }).on("error", reject)
        })
      return promiseClient(call, async () => agent.destroy())
    }
  }
]

const PING = "*1\r\n$4\r\nPING\r\n"

/** The same minimal reply parsing on both sides: one line. */
const parseLine = (data: Buffer) => {
  const end = data.indexOf("\r\n")
  return end === -1 ? undefined : ([data.toString("latin1", 0, end), end + 2] as const)
}

/** A socket speaking just enough RESP for PING: one request in flight at a time, as a pool lends it. */
class PingSocket {
  private buffer = ""
  private waiting: ((reply: string) => void) | undefined = undefined
  static connect(port: number): Promise<PingSocket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: "127.0.0.1", noDelay: true })
      socket.once("error", reject)
      socket.once("connect", () => resolve(new PingSocket(socket)))
    })
  }
  constructor(readonly socket: net.Socket) {
    socket.setEncoding("utf8")
    socket.on("data", (d: string) => {
      this.buffer += d
      const end = this.buffer.indexOf("\r\n")
      if (end === -1 || this.waiting === undefined) return
      const reply = this.buffer.slice(0, end)
      this.buffer = this.buffer.slice(end + 2)
      const resolve = this.waiting
      this.waiting = undefined
      resolve(reply)
    })
  }
  /** Writes PING; `onReply` gets the reply line, from the socket's `data` callback. */
  request(onReply: (reply: string) => void): void {
    this.waiting = onReply
    this.socket.write(PING)
  }
  ping(): Promise<string> {
    return new Promise((resolve) => this.request(resolve))
  }
}

/**
 * The floor of a strict-FIFO pool on effect's runtime for this exchange: plain fields, one `Effect.async` per
 * request, the socket handed to the oldest waiter inside the reply's callback, its PING written there. With
 * `stm`, a counter in a `TRef` is also updated in one `STM.commit` per acquire (in the caller's fiber) and one per
 * release (inside the callback, through a `Runtime`): state in STM committed through the STM driver (the core
 * commits its hot-path transitions without the journal); nothing else changes.
 */
const floorClient = async (port: number, stm: boolean): Promise<Client> => {
  type Resume = (reply: Effect.Effect<boolean>) => void
  const sockets = await Promise.all(Array.from({ length: CONNECTIONS }, () => PingSocket.connect(port)))
  const idle = [...sockets]
  const queue: Array<Resume> = []
  let head = 0
  const inUse = Effect.runSync(STM.commit(TRef.make(0)))
  const runSync = Runtime.runSync(Effect.runSync(Effect.runtime<never>()))
  const acquireTx = STM.commit(TRef.update(inUse, (n) => n + 1))
  const releaseTx = STM.commit(TRef.update(inUse, (n) => n - 1))
  const start = (socket: PingSocket, resume: Resume) =>
    socket.request((reply) => {
      if (stm) runSync(releaseTx)
      if (head < queue.length) {
        const next = queue[head]
        queue[head++] = undefined as never
        if (head === queue.length) queue.length = head = 0
        start(socket, next)
      } else idle.push(socket)
      resume(Effect.succeed(reply === "+PONG"))
    })
  const wait = Effect.async<boolean>((resume) => {
    const socket = head === queue.length ? idle.pop() : undefined
    if (socket !== undefined) start(socket, resume)
    else queue.push(resume)
  })
  return effectClient(stm ? Effect.zipRight(acquireTx, wait) : wait, async () => {
    for (const s of sockets) s.socket.destroy()
  })
}

const redisSubjects = (port: number): ReadonlyArray<Subject> => [
  {
    name: OURS_REDIS,
    open: () =>
      oursClient(
        { maxConnectionsPerEndpoint: CONNECTIONS },
        (pool) => Effect.map(pool.exchange(`127.0.0.1:${port}`, PING, parseLine), (line) => line === "+PONG")
      )
  },
  {
    name: GENERIC,
    open: async () => {
      const pool = genericPool.createPool<PingSocket>({
        create: () => PingSocket.connect(port),
        destroy: async (s) => void s.socket.destroy()
      }, { max: CONNECTIONS, min: 0 })
      return promiseClient(async () => {
        const s = await pool.acquire()
        try {
          return (await s.ping()) === "+PONG"
        } finally {
          await pool.release(s)
        }
      }, async () => {
        await pool.drain()
        await pool.clear()
      })
    }
  },
  { name: FLOOR, open: () => floorClient(port, false) },
  { name: FLOOR_STM, open: () => floorClient(port, true) }
]

interface Result {
  readonly name: string
  readonly rps: number
  readonly p50: number
  readonly p99: number
  readonly fewest: number
  readonly most: number
  readonly wrong: number
  /** The bench process's CPU time per request, in µs. */
  readonly cpu: number
}

/** Every subject once, unmeasured, so that round 1's first subject does not pay alone for compiling the code. */
const warmUp = async (subjects: ReadonlyArray<Subject>): Promise<void> => {
  for (const subject of subjects) {
    progress(`warm-up: ${subject.name}`)
    const client = await subject.open()
    try {
      await client.run(new Tally(performance.now() + WARMUP_MS))
    } finally {
      await client.close()
    }
  }
}

const measure = async (subject: Subject, seconds: number): Promise<Result> => {
  const client = await subject.open()
  try {
    const warm = new Tally(performance.now() + WARMUP_MS)
    await client.run(warm)
    gc()
    const start = performance.now()
    const cpu = process.cpuUsage()
    const tally = new Tally(start + seconds * 1000)
    await client.run(tally)
    const elapsed = (performance.now() - start) / 1000
    const used = process.cpuUsage(cpu)
    const quantile = nearestRank([tally.all])
    const fairness = fairnessOf(tally.counts)
    return {
      name: subject.name,
      rps: tally.n / elapsed,
      p50: quantile(0.5),
      p99: quantile(0.99),
      fewest: fairness.fewest,
      most: fairness.most,
      wrong: tally.wrong,
      cpu: (used.user + used.system) / tally.n
    }
  } finally {
    await client.close()
  }
}

/** The HTTP server runs in a process of its own, so that it does not share the clients' event loop. */
const startHttpServer = (): Promise<{ port: number; stop: () => void }> =>
  new Promise((resolve, reject) => {
    const code = `
      const http = require("node:http")
      const server = http.createServer((req, res) => {
        req.resume()
        req.on("end", () => {
          res.writeHead(200, { "content-type": "text/plain", "content-length": "2" })
          res.end("ok")
        })
      })
      server.keepAliveTimeout = 60000
      server.listen(0, "127.0.0.1", () => console.log(server.address().port))`
    const proc = child.spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] })
    proc.once("error", reject)
    proc.stdout.once("data", (d) => resolve({ port: Number(String(d).trim()), stop: () => proc.kill("SIGKILL") }))
  })

const row = (r: Result) =>
  `| ${r.name} | ${rate(r.rps)} | ${ms(r.p50)} | ${ms(r.p99)} | ${r.fewest} / ${r.most} | ${r.cpu.toFixed(1)} |` +
  (r.wrong > 0 ? ` ${r.wrong} wrong` : "")

export const main = async (): Promise<void> => {
  const began = performance.now()
  const seconds = positive("TCP_SECONDS", process.env.TCP_SECONDS, 3, false)
  const rounds = positive("TCP_ROUNDS", process.env.TCP_ROUNDS, 3, true)
  const httpServer = await startHttpServer()
  const redisScope = Effect.runSync(Scope.make())
  const redisServer = await Effect.runPromise(Scope.extend(redis, redisScope))
  console.log(`# TCP pools: ${CONNECTIONS} connections, ${CALLERS} callers, ${seconds} s per run, ${rounds} rounds`)
  console.log(machineLine())
  console.log(commitLine())
  console.log(
    `- undici ${versionOf("undici")}, generic-pool ${versionOf("generic-pool")}, effect ${versionOf("effect")}; ` +
      `node:http server in a child process, redis-server on 127.0.0.1:${redisServer.port}`
  )
  const ratios = {
    agent: [] as Array<number>,
    undici: [] as Array<number>,
    generic: [] as Array<number>,
    floor: [] as Array<number>,
    floorStm: [] as Array<number>
  }
  const all = new Map<string, Array<Result>>()
  const problems: Array<string> = []
  try {
    await warmUp([...httpSubjects(httpServer.port), ...redisSubjects(redisServer.port)])
    for (let r = 0; r < rounds; r++) {
      const results = new Map<string, Result>()
      const subjects = [...rotate(httpSubjects(httpServer.port), r), ...rotate(redisSubjects(redisServer.port), r)]
      for (const subject of subjects) {
        progress(`round ${r + 1}: ${subject.name}`)
        const result = await measure(subject, seconds)
        results.set(subject.name, result)
        all.set(subject.name, [...(all.get(subject.name) ?? []), result])
        if (result.wrong > 0) problems.push(`${subject.name}: ${result.wrong} wrong replies in round ${r + 1}`)
      }
      console.log("")
      console.log(`## Round ${r + 1}`)
      console.log("| subject | req/s | p50 ms | p99 ms | fewest / most per caller | CPU µs/req |")
      console.log("|---|---|---|---|---|---|")
      for (const result of results.values()) console.log(row(result))
      const rps = (name: string) => results.get(name)!.rps
      ratios.agent.push(rps(OURS_HTTP) / rps(AGENT))
      ratios.undici.push(rps(OURS_HTTP) / rps(UNDICI))
      ratios.generic.push(rps(OURS_REDIS) / rps(GENERIC))
      ratios.floor.push(rps(FLOOR) / rps(GENERIC))
      ratios.floorStm.push(rps(FLOOR_STM) / rps(GENERIC))
      console.log(
        `ratios: ours / http.Agent ${times(ratios.agent[r], 2)}, ours / undici ${times(ratios.undici[r], 2)}, ` +
          `ours / generic-pool (Redis) ${times(ratios.generic[r], 2)}; over generic-pool, the floor ` +
          `${times(ratios.floor[r], 2)}, the floor with STM ${times(ratios.floorStm[r], 2)}`
      )
    }
  } finally {
    httpServer.stop()
    await Effect.runPromise(Scope.close(redisScope, Exit.void))
  }
  const list = (xs: ReadonlyArray<number>) => xs.map((x) => x.toFixed(2)).join(", ")
  console.log("")
  console.log(`## Medians of ${rounds} rounds`)
  console.log(`- ours / http.Agent: ${times(median(ratios.agent), 2)} (rounds: ${list(ratios.agent)})`)
  console.log(`- ours / undici Pool: ${times(median(ratios.undici), 2)} (rounds: ${list(ratios.undici)})`)
  console.log(
    `- ours / generic-pool, Redis PING: ${times(median(ratios.generic), 2)} (rounds: ${list(ratios.generic)})`
  )
  console.log(
    `- floors / generic-pool, Redis PING: plain state ${times(median(ratios.floor), 2)} ` +
      `(rounds: ${list(ratios.floor)}); with 2 STM commits ${times(median(ratios.floorStm), 2)} ` +
      `(rounds: ${list(ratios.floorStm)})`
  )
  console.log("")
  console.log(`## Each subject's medians over the ${rounds} rounds`)
  console.log("| subject | req/s | min–max | p50 ms | p99 ms | CPU µs/req |")
  console.log("|---|--:|--:|--:|--:|--:|")
  for (const [name, results] of all) {
    const of = (f: (r: Result) => number) => results.map(f)
    const rps = of((r) => r.rps)
    console.log(
      `| ${name} | ${rate(median(rps))} | ${rate(Math.min(...rps))}–${rate(Math.max(...rps))} | ` +
        `${ms(median(of((r) => r.p50)))} | ${ms(median(of((r) => r.p99)))} | ${median(of((r) => r.cpu)).toFixed(1)} |`
    )
  }
  const targets: ReadonlyArray<Target> = [
    { name: "HTTP ≥ 1.0× http.Agent", value: times(median(ratios.agent), 2), met: median(ratios.agent) >= 1 },
    { name: "HTTP ≥ 0.7× undici Pool", value: times(median(ratios.undici), 2), met: median(ratios.undici) >= 0.7 },
    { name: "Redis ≥ 1.0× generic-pool", value: times(median(ratios.generic), 2), met: median(ratios.generic) >= 1 }
  ]
  printSummary(began, problems, "Checks passed: every reply was right.", targets)
}
