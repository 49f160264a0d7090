import { TcpPool } from "@connection-pool/tcp"
import { Effect } from "effect"

/** An HTTP/1.1 GET over a pooled TLS connection; SNI (and the name checked) is the endpoint's host. */
export const status = (url: string) =>
  TcpPool.withConnection(url, (conn) =>
    Effect.gen(function*() {
      yield* conn.write(`GET / HTTP/1.1\r\nHost: ${conn.endpoint.host}\r\nConnection: close\r\n\r\n`)
      const head = Buffer.from(yield* conn.read).toString("latin1")
      conn.invalidate() // "Connection: close": never reused
      return `${head.slice(9, 12)} via ${conn.alpnProtocol ?? "no ALPN"}`
    })).pipe(
      Effect.catchTags({
        TlsFailed: (e) => Effect.succeed(`TLS refused (${e.reason}): ${e.message}`),
        ConnectionFailed: (e) => Effect.succeed(`unreachable after ${e.attempts} attempts`)
      })
    )

export const HttpsPool = (ca: string) =>
  TcpPool.layer({
    tls: { ca, ALPN: ["http/1.1"] }, // servername defaults to each endpoint's host
    tlsHandshakeTimeout: "5 seconds",
    maxConnections: 32 // across every endpoint
  })
