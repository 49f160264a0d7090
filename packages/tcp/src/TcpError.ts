/**
 * The typed failures of a TCP pool. Every one is a `Data.TaggedError` with a readable `message` that names the
 * endpoint and never a secret. `PoolTimeout`, `PoolOverloaded`, `PoolClosed` and `InvalidConfig` are the core's own.
 *
 * @since 0.1.0
 */
import { InvalidConfig, PoolClosed, PoolOverloaded, PoolTimeout } from "@connection-pool/core/PoolError"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import { hasProperty } from "effect/Predicate"

export {
  /**
   * An option was out of range, raised by `TcpPool.make` / `layer` / `layerConfig`.
   *
   * @since 0.1.0
   * @category errors
   */
  InvalidConfig,
  /**
   * The pool (or the endpoint's pool, evicted or cleared under the caller) was shut down.
   *
   * @since 0.1.0
   * @category errors
   */
  PoolClosed,
  /**
   * Shed at once: `maxWaitingPerEndpoint` callers already wait for the endpoint (or, under `shedOnExpectedWait`,
   * the wait would outlast `acquireTimeout`).
   *
   * @since 0.3.0
   * @category errors
   */
  PoolOverloaded,
  /**
   * No connection within `acquireTimeout`.
   *
   * @since 0.1.0
   * @category errors
   */
  PoolTimeout
}

/**
 * A host, port or URL that cannot name a TCP endpoint.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidEndpoint extends Data.TaggedError("InvalidEndpoint")<{
  readonly input: string
  readonly reason: string
}> {
  override get message(): string {
    return `invalid endpoint ${JSON.stringify(this.input)}: ${this.reason}`
  }
}

/**
 * The endpoint's host name did not resolve. `code` is the resolver's (`ENOTFOUND`, `EAI_AGAIN`, ...).
 *
 * @since 0.1.0
 * @category errors
 */
export class DnsResolutionFailed extends Data.TaggedError("DnsResolutionFailed")<{
  readonly hostname: string
  readonly code: string
  readonly attempts: number
  readonly cause?: unknown
}> {
  override get message(): string {
    return `could not resolve ${this.hostname} (${this.code})${after(this.attempts)}`
  }
}

/**
 * Every address of the endpoint refused or dropped the connection, on every attempt. `lastError` is the last
 * socket error (its `code`, for example `ECONNREFUSED`), or what the protocol's `onCreate` failed with.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConnectionFailed extends Data.TaggedError("ConnectionFailed")<{
  readonly endpoint: string
  readonly attempts: number
  readonly lastError: unknown
  /** `"connect"` for the socket, `"handshake"` for the protocol's `onCreate` (never retried). */
  readonly phase: "connect" | "handshake"
}> {
  override get message(): string {
    const what = this.phase === "handshake" ? "protocol handshake with" : "could not connect to"
    return `${what} ${this.endpoint} failed: ${describe(this.lastError)}${after(this.attempts)}`
  }
}

/**
 * The TCP connect (`phase: "connect"`), the TLS handshake (`phase: "tls"`) or the protocol's `onCreate`
 * (`phase: "handshake"`) took longer than its timeout, on the last of `attempts` attempts.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConnectionTimeout extends Data.TaggedError("ConnectionTimeout")<{
  readonly endpoint: string
  readonly timeout: Duration.Duration
  readonly phase: "connect" | "tls" | "handshake"
  readonly attempts: number
}> {
  override get message(): string {
    const what = this.phase === "tls"
      ? "TLS handshake with"
      : this.phase === "handshake"
      ? "protocol handshake with"
      : "connect to"
    return `${what} ${this.endpoint} timed out after ${Duration.format(this.timeout)}${after(this.attempts)}`
  }
}

/**
 * The TLS handshake failed: the server's certificate is not trusted (`reason: "unknown-ca"`), does not name
 * `servername` (`"name-mismatch"`), has expired or is not yet valid (`"expired"`), or the handshake broke
 * (`"handshake"`). `code` is OpenSSL's / Node's. Never retried: the next attempt would fail the same way.
 *
 * @since 0.1.0
 * @category errors
 */
export class TlsFailed extends Data.TaggedError("TlsFailed")<{
  readonly endpoint: string
  readonly servername: string | undefined
  readonly reason: "unknown-ca" | "name-mismatch" | "expired" | "handshake"
  readonly code: string
  readonly cause?: unknown
}> {
  override get message(): string {
    const name = this.servername === undefined ? "" : ` (servername ${this.servername})`
    return `TLS with ${this.endpoint}${name} failed: ${reasons[this.reason]} (${this.code})`
  }
}

/**
 * Reading from or writing to a borrowed connection failed: the peer closed it (`code: "EOF"`), reset it, or the
 * connection was closed under its user.
 *
 * @since 0.1.0
 * @category errors
 */
export class SocketError extends Data.TaggedError("SocketError")<{
  readonly endpoint: string
  readonly code: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return this.code === "EOF"
      ? `${this.endpoint} closed the connection`
      : `connection to ${this.endpoint} failed: ${describe(this.cause ?? this.code)}`
  }
}

/**
 * Why a connection could not be opened.
 *
 * @since 0.1.0
 * @category errors
 */
export type ConnectError = DnsResolutionFailed | ConnectionFailed | ConnectionTimeout | TlsFailed

/**
 * Every failure a borrow can end in.
 *
 * @since 0.1.0
 * @category errors
 */
export type TcpPoolError = ConnectError | PoolTimeout | PoolOverloaded | PoolClosed | InvalidEndpoint

const connectTags = new Set(["DnsResolutionFailed", "ConnectionFailed", "ConnectionTimeout", "TlsFailed"])

/**
 * @since 0.1.0
 * @category refinements
 */
export const isConnectError = (u: unknown): u is ConnectError =>
  hasProperty(u, "_tag") && typeof u._tag === "string" && connectTags.has(u._tag)

const reasons = {
  "unknown-ca": "the server's certificate is not signed by a trusted CA",
  "name-mismatch": "the server's certificate does not match the name",
  "expired": "the server's certificate has expired or is not yet valid",
  "handshake": "the handshake failed"
} as const

const after = (attempts: number) => attempts > 1 ? ` (after ${attempts} attempts)` : ""

const describe = (error: unknown): string => {
  if (hasProperty(error, "message") && typeof error.message === "string") {
    const code = hasProperty(error, "code") && typeof error.code === "string" ? error.code : undefined
    return code !== undefined && !error.message.includes(code) ? `${code} ${error.message}` : error.message
  }
  return String(error)
}
