/**
 * Real servers the tests start on 127.0.0.1 and free ports: redis-server, a plain TCP server that counts its
 * sockets, an HTTP/1.1 keep-alive server, a listener that never accepts, and throwaway TLS certificates.
 */
import { Effect, Scope } from "effect"
import * as child from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

export const freePort = Effect.async<number>((resume) => {
  const server = net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A port nothing listens on (refused at once on loopback). */
export const refusedPort = freePort

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const ping = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, "127.0.0.1")
    s.once("error", () => resolve(false))
    s.once("connect", () => s.write("PING\r\n"))
    s.once("data", (d) => {
      s.destroy()
      resolve(d.toString().startsWith("+PONG"))
    })
  })

export interface Redis {
  readonly port: number
  readonly stop: Effect.Effect<void>
  readonly start: Effect.Effect<void>
}

/** A redis-server of the test's own, stopped with the scope. `stop` / `start` kill and restart it on its port. */
export const redis: Effect.Effect<Redis, never, Scope.Scope> = Effect.gen(function*() {
  const port = yield* freePort
  let proc: child.ChildProcess | undefined
  const start = Effect.promise(async () => {
    proc = child.spawn("redis-server", [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--maxclients",
      "1000"
    ], { stdio: "ignore" })
    for (let i = 0; i < 200; i++) {
      if (await ping(port)) return
      await sleep(25)
    }
    throw new Error("redis-server did not start")
  })
  const stop = Effect.promise(async () => {
    const p = proc
    proc = undefined
    if (p === undefined || p.exitCode !== null) return
    await new Promise<void>((resolve) => {
      p.once("exit", () => resolve())
      p.kill("SIGKILL")
    })
  })
  yield* Effect.acquireRelease(start, () => stop)
  return { port, stop, start }
})

export interface Counting {
  readonly port: number
  /** Sockets open now, on the server's side. */
  readonly open: () => number
  readonly maxOpen: () => number
  readonly accepted: () => number
  readonly sockets: Set<net.Socket>
}

/** A TCP server that echoes and counts its sockets. */
export const countingServer: Effect.Effect<Counting, never, Scope.Scope> = Effect.acquireRelease(
  Effect.async<Counting & { server: net.Server }>((resume) => {
    const sockets = new Set<net.Socket>()
    let maxOpen = 0
    let accepted = 0
    const server = net.createServer((socket) => {
      accepted++
      sockets.add(socket)
      maxOpen = Math.max(maxOpen, sockets.size)
      socket.on("data", (d) => socket.write(d))
      socket.on("error", () => {})
      socket.on("close", () => sockets.delete(socket))
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({
        server,
        port: (server.address() as net.AddressInfo).port,
        open: () => sockets.size,
        maxOpen: () => maxOpen,
        accepted: () => accepted,
        sockets
      })))
  }),
  ({ server, sockets }) =>
    Effect.async<void>((resume) => {
      for (const s of sockets) s.destroy()
      server.close(() => resume(Effect.void))
    })
)

export interface Http {
  readonly port: number
  readonly server: http.Server
  readonly open: () => number
  readonly maxOpen: () => number
}

/** An HTTP/1.1 keep-alive server answering "ok" to everything, closing idle sockets after `keepAliveTimeout`. */
export const httpServer = (keepAliveTimeout: number): Effect.Effect<Http, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Http>((resume) => {
      const sockets = new Set<net.Socket>()
      let maxOpen = 0
      const server = http.createServer((req, res) => {
        req.resume()
        req.on("end", () => {
          res.writeHead(200, { "content-type": "text/plain", "content-length": "2" })
          res.end("ok")
        })
      })
      server.keepAliveTimeout = keepAliveTimeout
      server.on("connection", (s) => {
        sockets.add(s)
        maxOpen = Math.max(maxOpen, sockets.size)
        s.on("close", () => sockets.delete(s))
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          port: (server.address() as net.AddressInfo).port,
          server,
          open: () => sockets.size,
          maxOpen: () => maxOpen
        })))
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

/**
 * A listener whose accept queue is full, so further SYNs are dropped and a connect hangs until its timeout: a
 * Python child process that listens with a backlog of 0 and never accepts, with its queue filled by us.
 */
export const blackhole: Effect.Effect<number, never, Scope.Scope> = Effect.gen(function*() {
  const proc = yield* Effect.acquireRelease(
    Effect.sync(() =>
      child.spawn("python3", [
        "-c",
        "import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\n" +
        "print(s.getsockname()[1],flush=True)\ntime.sleep(600)"
      ], { stdio: ["ignore", "pipe", "ignore"] })
    ),
    (p) => Effect.sync(() => p.kill("SIGKILL"))
  )
  const port = yield* Effect.async<number>((resume) => {
    proc.stdout!.once("data", (d) => resume(Effect.succeed(Number(String(d).trim()))))
  })
  // fill the accept queue: these complete the handshake and sit in the queue; later SYNs are dropped
  const fillers = yield* Effect.acquireRelease(
    Effect.promise(async () => {
      const out: Array<net.Socket> = []
      for (let i = 0; i < 4; i++) {
        const s = net.connect(port, "127.0.0.1")
        s.on("error", () => {})
        out.push(s)
        await sleep(20)
      }
      return out
    }),
    (sockets) => Effect.sync(() => sockets.forEach((s) => s.destroy()))
  )
  void fillers
  return port
})

export interface Certs {
  readonly dir: string
  readonly ca: string
  readonly otherCa: string
  /** Leaf certificate and key per name, signed by `ca`. */
  readonly leaf: (name: string) => { readonly cert: string; readonly key: string }
  readonly expired: { readonly cert: string; readonly key: string }
}

const openssl = (dir: string, args: string) => child.execSync(`openssl ${args}`, { cwd: dir, stdio: "pipe" })

/** A throwaway CA, a second unrelated CA, leaves for `names` and one expired leaf, made by openssl. */
export const certificates = (names: ReadonlyArray<string>): Effect.Effect<Certs, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tcp-tls-"))
      for (const ca of ["ca", "other"]) {
        openssl(
          dir,
          `req -x509 -newkey rsa:2048 -nodes -keyout ${ca}.key -out ${ca}.pem -days 2 -subj /CN=test-${ca}`
        )
      }
      const sign = (name: string, file: string, days: string) => {
        fs.writeFileSync(path.join(dir, `${file}.ext`), `subjectAltName=DNS:${name}\n`)
        openssl(dir, `req -newkey rsa:2048 -nodes -keyout ${file}.key -out ${file}.csr -subj /CN=${name}`)
        openssl(
          dir,
          `x509 -req -in ${file}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out ${file}.pem ${days} ` +
            `-extfile ${file}.ext`
        )
      }
      names.forEach((name, i) => sign(name, `leaf${i}`, "-days 2"))
      sign("expired.test", "expired", "-days -1") // not after a day before it was made
      const read = (f: string) => fs.readFileSync(path.join(dir, f), "utf8")
      return {
        dir,
        ca: read("ca.pem"),
        otherCa: read("other.pem"),
        leaf: (name: string) => {
          const i = names.indexOf(name)
          return { cert: read(`leaf${i}.pem`), key: read(`leaf${i}.key`) }
        },
        expired: { cert: read("expired.pem"), key: read("expired.key") }
      }
    }),
    ({ dir }) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )
