import { TcpError, TcpPool } from "@connection-pool/tcp"
import { assert, describe, it, layer } from "@effect/vitest"
import { Cause, Context, Effect, Exit, Layer, Option, Redacted } from "effect"
import * as net from "node:net"
import * as tls from "node:tls"
import { certificates, type Certs } from "./support/servers.js"

interface TlsServer {
  readonly port: number
  readonly certs: Certs
}

class Server extends Context.Tag("test/TlsServer")<Server, TlsServer>() {}

/** Certificates per SNI name (the default one is a.test's); each connection is told the name it asked for. */
const TlsLive = Layer.scoped(
  Server,
  Effect.gen(function*() {
    const certs = yield* certificates(["a.test", "b.test"])
    const contexts = new Map<string, tls.SecureContext>([
      ["a.test", tls.createSecureContext(certs.leaf("a.test"))],
      ["b.test", tls.createSecureContext(certs.leaf("b.test"))],
      ["expired.test", tls.createSecureContext(certs.expired)]
    ])
    const server = tls.createServer({
      ...certs.leaf("a.test"),
      ALPNProtocols: ["http/1.1"],
      SNICallback: (name, cb) => cb(null, contexts.get(name) ?? contexts.get("a.test")!)
    }, (socket) => {
      socket.on("error", () => {})
      socket.write(`${socket.servername || "-"}\n`)
    })
    server.on("tlsClientError", () => {})
    const port = yield* Effect.acquireRelease(
      Effect.async<number>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as net.AddressInfo).port)))
      }),
      () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
    )
    return { port, certs }
  })
)

/** Every `*.test` name is this machine. */
const resolver: TcpPool.Resolver = () => Effect.succeed(["127.0.0.1"])

const failure = <A, E>(exit: Exit.Exit<A, E>): E => {
  assert.isTrue(Exit.isFailure(exit))
  return Option.getOrThrow(Cause.failureOption((exit as Exit.Failure<A, E>).cause))
}

const hello = (pool: TcpPool.TcpPool, endpoint: string) =>
  pool.withConnection(endpoint, (conn) =>
    Effect.map(conn.read, (data) => ({
      sni: String(Buffer.from(data)).trim(),
      subject: (conn.socket as tls.TLSSocket).getPeerCertificate().subject.CN,
      alpn: conn.alpnProtocol
    })))

layer(TlsLive, { excludeTestServices: true })("TLS", (it) => {
  it.scoped("SNI is the endpoint's host: each name gets its certificate", () =>
    Effect.gen(function*() {
      const { certs, port } = yield* Server
      const pool = yield* TcpPool.make({ resolver, tls: { ca: certs.ca, ALPN: ["h2", "http/1.1"] } })
      for (const name of ["a.test", "b.test"]) {
        assert.deepStrictEqual(yield* hello(pool, `${name}:${port}`), { sni: name, subject: name, alpn: "http/1.1" })
      }
      // two endpoints, two pools
      assert.strictEqual((yield* pool.allStats).endpoints.length, 2)
    }))

  it.scoped("a tls:// endpoint uses TLS, and servername overrides SNI for an IP address", () =>
    Effect.gen(function*() {
      const { certs, port } = yield* Server
      const pool = yield* TcpPool.make({ tls: { ca: certs.ca, servername: "b.test" } })
      const reply = yield* hello(pool, `tls://127.0.0.1:${port}`)
      assert.deepStrictEqual([reply.sni, reply.subject], ["b.test", "b.test"])
    }))

  it.scoped("an untrusted CA is TlsFailed unknown-ca", () =>
    Effect.gen(function*() {
      const { certs, port } = yield* Server
      const pool = yield* TcpPool.make({ resolver, tls: { ca: certs.otherCa } })
      const error = failure(yield* Effect.exit(hello(pool, `a.test:${port}`))) as TcpError.TlsFailed
      assert.strictEqual(error._tag, "TlsFailed")
      assert.deepStrictEqual([error.reason, error.servername], ["unknown-ca", "a.test"])
      assert.include(error.message, "not signed by a trusted CA")
      assert.strictEqual(Option.getOrThrow(yield* pool.stats(`a.test:${port}`)).errors, 1, "not retried")
      assert.strictEqual((yield* pool.allStats).sockets, 0)
    }))

  it.scoped("a certificate for another name is TlsFailed name-mismatch", () =>
    Effect.gen(function*() {
      const { certs, port } = yield* Server
      const pool = yield* TcpPool.make({ resolver, tls: { ca: certs.ca } })
      const error = failure(yield* Effect.exit(hello(pool, `c.test:${port}`))) as TcpError.TlsFailed
      assert.deepStrictEqual(
        [error._tag, error.reason, error.code],
        ["TlsFailed", "name-mismatch", "ERR_TLS_CERT_ALTNAME_INVALID"]
      )
    }))

  it.scoped("an expired certificate is TlsFailed expired", () =>
    Effect.gen(function*() {
      const { certs, port } = yield* Server
      const pool = yield* TcpPool.make({ resolver, tls: { ca: certs.ca } })
      const error = failure(yield* Effect.exit(hello(pool, `expired.test:${port}`))) as TcpError.TlsFailed
      assert.deepStrictEqual([error._tag, error.reason, error.code], ["TlsFailed", "expired", "CERT_HAS_EXPIRED"])
    }))

  it.scoped("a client certificate, its key Redacted, for a server that asks for one", () =>
    Effect.gen(function*() {
      const { certs } = yield* Server
      const options = { ...certs.leaf("a.test"), ca: certs.ca, requestCert: true, rejectUnauthorized: true }
      const server = tls.createServer(options, (socket) => {
        socket.on("error", () => {})
        socket.write(`${socket.getPeerCertificate().subject.CN}\n`)
      })
      server.on("tlsClientError", () => {})
      const port = yield* Effect.acquireRelease(
        Effect.async<number>((resume) => {
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as net.AddressInfo).port)))
        }),
        () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
      )
      const client = certs.leaf("b.test")
      const pool = yield* TcpPool.make({
        resolver,
        tls: { ca: certs.ca, cert: client.cert, key: Redacted.make(client.key) }
      })
      const seen = yield* pool.withConnection(
        `a.test:${port}`,
        (conn) => Effect.map(conn.read, (d) => String(Buffer.from(d)).trim())
      )
      assert.strictEqual(seen, "b.test")
    }))

  it.scoped("a TLS handshake that never completes is ConnectionTimeout in the tls phase", () =>
    Effect.gen(function*() {
      // a plain TCP server that accepts and says nothing
      const sockets = new Set<net.Socket>()
      const silent = net.createServer((s) => void sockets.add(s))
      const port = yield* Effect.acquireRelease(
        Effect.async<number>((resume) => {
          silent.listen(0, "127.0.0.1", () => resume(Effect.succeed((silent.address() as net.AddressInfo).port)))
        }),
        () => Effect.async<void>((resume) => {
          sockets.forEach((s) => s.destroy())
          silent.close(() => resume(Effect.void))
        })
      )
      const pool = yield* TcpPool.make({ tls: {}, tlsHandshakeTimeout: "100 millis", connectRetries: 0 })
      const error = failure(yield* Effect.exit(pool.withConnection(`127.0.0.1:${port}`, () => Effect.void)))
      assert.strictEqual(error._tag, "ConnectionTimeout")
      assert.strictEqual((error as TcpError.ConnectionTimeout).phase, "tls")
      assert.strictEqual((yield* pool.allStats).sockets, 0)
    }))
})

describe("TLS options", () => {
  it.effect("bad TLS options are InvalidConfig", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(TcpPool.make({ tls: { servername: "" } })))
      assert.deepStrictEqual([error._tag, error.option], ["InvalidConfig", "tls.servername"])
    }))
})
