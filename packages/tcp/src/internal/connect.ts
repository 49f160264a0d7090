import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as Redacted from "effect/Redacted"
import * as dns from "node:dns"
import * as net from "node:net"
import * as tls from "node:tls"
import type * as Endpoint from "../Endpoint.js"
import type * as TcpPool from "../TcpPool.js"
import { type ConnectError, ConnectionFailed, ConnectionTimeout, DnsResolutionFailed, TlsFailed } from "../TcpError.js"
import { codeOf } from "./connection.js"
import { backoffDelay, type Resolved } from "./options.js"

/** An open socket and the address it reached. @internal */
export interface Opened {
  readonly socket: net.Socket | tls.TLSSocket
  readonly address: string
}

/** What one connect needs besides the endpoint. @internal */
export interface Connector {
  readonly options: Resolved
  readonly resolver: TcpPool.Resolver
  /** Every socket made, until its `close` event: so that a test (and `allStats`) can see none is left open. */
  readonly sockets: Set<net.Socket>
}

/** The system resolver: `dns.lookup` with every address, in the order the system prefers. @internal */
export const systemResolver: TcpPool.Resolver = (hostname) =>
  Effect.async<ReadonlyArray<string>, DnsResolutionFailed>((resume) => {
    dns.lookup(hostname, { all: true }, (error, addresses) => {
      if (error !== null) {
        resume(Effect.fail(new DnsResolutionFailed({ hostname, code: codeOf(error), attempts: 1, cause: error })))
      } else resume(Effect.succeed(addresses.map((a) => a.address)))
    })
  })

const resolveHost = (connector: Connector, endpoint: Endpoint.Endpoint) => {
  if (net.isIP(endpoint.host) !== 0) return Effect.succeed([endpoint.host])
  return connector.resolver(endpoint.host).pipe(
    Effect.flatMap((addresses) =>
      addresses.length === 0
        ? Effect.fail(new DnsResolutionFailed({ hostname: endpoint.host, code: "ENODATA", attempts: 1 }))
        : Effect.succeed(addresses)
    ),
    Effect.timeoutFail({
      duration: connector.options.connectTimeout,
      onTimeout: () => new DnsResolutionFailed({ hostname: endpoint.host, code: "ETIMEOUT", attempts: 1 })
    })
  )
}

/** A socket error that another address or a later attempt may not see. */
class Refused {
  constructor(readonly error: unknown) {}
}

/** Destroys `socket` and waits for its `close` event, so that an interrupted connect leaves nothing open. */
const destroy = (connector: Connector, socket: net.Socket) =>
  Effect.async<void>((resume) => {
    afterClose(connector, socket, () => resume(Effect.void))
  })

/** Destroys a tracked socket and calls `f` once its `close` event has fired (`closed` is set a tick before). */
const afterClose = (connector: Connector, socket: net.Socket, f: () => void) => {
  if (!connector.sockets.has(socket)) return f()
  socket.once("close", f)
  socket.destroy()
}

const track = <S extends net.Socket>(connector: Connector, socket: S, made: Array<net.Socket>): S => {
  made.push(socket)
  connector.sockets.add(socket)
  socket.once("close", () => connector.sockets.delete(socket))
  return socket
}

/** TCP to one address, bounded by `connectTimeout`. */
const tcp = (connector: Connector, endpoint: Endpoint.Endpoint, address: string, made: Array<net.Socket>) => {
  const o = connector.options
  return Effect.async<net.Socket, Refused>((resume) => {
    const socket = track(connector, net.connect({ host: address, port: endpoint.port, noDelay: o.noDelay }), made)
    const failed = (error: Error) => {
      // answered once the socket is closed, so that no failed connect leaves one behind
      afterClose(connector, socket, () => resume(Effect.fail(new Refused(error))))
    }
    socket.once("error", failed)
    socket.once("connect", () => {
      socket.off("error", failed)
      if (o.keepAlive > 0 && o.keepAlive !== Infinity) socket.setKeepAlive(true, o.keepAlive)
      resume(Effect.succeed(socket))
    })
    return destroy(connector, socket)
  }).pipe(
    Effect.timeoutFail({
      duration: o.connectTimeout,
      onTimeout: () =>
        new ConnectionTimeout({
          endpoint: endpoint.key,
          timeout: Duration.millis(o.connectTimeout),
          phase: "connect",
          attempts: 1
        })
    })
  )
}

const tlsReason = (code: string): TlsFailed["reason"] => {
  switch (code) {
    case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
    case "UNABLE_TO_GET_ISSUER_CERT":
    case "UNABLE_TO_GET_ISSUER_CERT_LOCALLY":
    case "SELF_SIGNED_CERT_IN_CHAIN":
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
    case "CERT_UNTRUSTED":
      return "unknown-ca"
    case "ERR_TLS_CERT_ALTNAME_INVALID":
    case "HOSTNAME_MISMATCH":
      return "name-mismatch"
    case "CERT_HAS_EXPIRED":
    case "CERT_NOT_YET_VALID":
      return "expired"
    default:
      return "handshake"
  }
}

/** SNI: the option, else the endpoint's host when it is a name (SNI carries no IP addresses). @internal */
export const servername = (options: TcpPool.TlsOptions, endpoint: Endpoint.Endpoint): string | undefined =>
  options.servername ?? (net.isIP(endpoint.host) === 0 ? endpoint.host : undefined)

/** The TLS handshake over an open TCP socket, bounded by `tlsHandshakeTimeout`. */
const secure = (
  connector: Connector,
  endpoint: Endpoint.Endpoint,
  socket: net.Socket,
  options: TcpPool.TlsOptions,
  made: Array<net.Socket>
) => {
  const o = connector.options
  const name = servername(options, endpoint)
  return Effect.async<tls.TLSSocket, TlsFailed>((resume) => {
    const secured = track(
      connector,
      tls.connect({
        socket,
        host: endpoint.host,
        ...(name === undefined ? {} : { servername: name }),
        ...(options.ca === undefined ? {} : { ca: options.ca as tls.ConnectionOptions["ca"] }),
        ...(options.cert === undefined ? {} : { cert: options.cert as tls.ConnectionOptions["cert"] }),
        ...(options.key === undefined
          ? {}
          : { key: Redacted.isRedacted(options.key) ? Redacted.value(options.key) : Buffer.from(options.key) }),
        ...(options.ALPN === undefined ? {} : { ALPNProtocols: [...options.ALPN] }),
        rejectUnauthorized: options.rejectUnauthorized ?? true
      }),
      made
    )
    const failed = (error: Error) => {
      const code = codeOf(error)
      const fail = Effect.fail(
        new TlsFailed({ endpoint: endpoint.key, servername: name, reason: tlsReason(code), code, cause: error })
      )
      afterClose(connector, secured, () => resume(fail))
    }
    secured.once("error", failed)
    secured.once("secureConnect", () => {
      secured.off("error", failed)
      resume(Effect.succeed(secured))
    })
    return destroy(connector, secured)
  }).pipe(
    Effect.timeoutFail({
      duration: o.tlsHandshakeTimeout,
      onTimeout: () =>
        new ConnectionTimeout({
          endpoint: endpoint.key,
          timeout: Duration.millis(o.tlsHandshakeTimeout),
          phase: "tls",
          attempts: 1
        })
    }),
    Effect.onError(() => destroy(connector, socket))
  )
}

type Failure = ConnectError | Refused

/** One attempt: resolve, then each address in turn until one connects (and, for TLS, completes its handshake). */
const attempt = (
  connector: Connector,
  endpoint: Endpoint.Endpoint,
  tlsOptions: TcpPool.TlsOptions | undefined,
  made: Array<net.Socket>
): Effect.Effect<Opened, Failure> =>
  Effect.flatMap(resolveHost(connector, endpoint), (addresses) => {
    const next = (i: number): Effect.Effect<Opened, Failure> =>
      tcp(connector, endpoint, addresses[i], made).pipe(
        Effect.flatMap((socket): Effect.Effect<net.Socket, Failure> =>
          tlsOptions === undefined ? Effect.succeed(socket) : secure(connector, endpoint, socket, tlsOptions, made)
        ),
        Effect.map((socket): Opened => ({ socket, address: addresses[i] })),
        Effect.catchAll((error) =>
          i + 1 < addresses.length && !(error instanceof TlsFailed) ? next(i + 1) : Effect.fail(error)
        )
      )
    return next(0)
  })

const retryable = (error: Failure): boolean =>
  error instanceof Refused || error._tag === "ConnectionTimeout" ||
  (error._tag === "DnsResolutionFailed" && error.code !== "ENOTFOUND" && error.code !== "ENODATA")

const final = (endpoint: Endpoint.Endpoint, error: Failure, attempts: number): ConnectError => {
  if (error instanceof Refused) {
    return new ConnectionFailed({ endpoint: endpoint.key, attempts, lastError: error.error, phase: "connect" })
  }
  switch (error._tag) {
    case "ConnectionTimeout":
      return new ConnectionTimeout({ ...error, attempts })
    case "DnsResolutionFailed":
      return new DnsResolutionFailed({ ...error, attempts })
    default:
      return error
  }
}

/**
 * Destroys whatever sockets a connect made, for a connect that failed or was interrupted (possibly just after a
 * socket opened, before it reached a connection).
 * @internal
 */
export const destroyAll = (connector: Connector, made: ReadonlyArray<net.Socket>): Effect.Effect<void> =>
  Effect.forEach(made, (socket) => destroy(connector, socket), { discard: true })

/**
 * Opens a socket to `endpoint`, retrying refused, reset and timed-out connects `connectRetries` times with
 * jittered exponential backoff (slept on the `Clock`). A name that does not exist and a certificate that is not
 * trusted fail at once: another attempt would see the same. The error tells how many attempts were made.
 * @internal
 */
export const open = (
  connector: Connector,
  endpoint: Endpoint.Endpoint,
  tlsOptions: TcpPool.TlsOptions | undefined,
  onAttemptFailed: (error: ConnectError) => void,
  made: Array<net.Socket>
): Effect.Effect<Opened, ConnectError> => {
  const retries = connector.options.connectRetries
  const loop = (n: number): Effect.Effect<Opened, ConnectError> =>
    Effect.catchAll(attempt(connector, endpoint, tlsOptions, made), (error) => {
      const typed = final(endpoint, error, n)
      onAttemptFailed(typed)
      if (n > retries || !retryable(error)) return Effect.fail(typed)
      return Effect.flatMap(Random.next, (r) =>
        Effect.zipRight(
          Effect.logDebug(`connect failed, retrying: ${typed.message}`),
          Effect.zipRight(Effect.sleep(backoffDelay(connector.options, n, r)), loop(n + 1))
        ))
    })
  return loop(1)
}
