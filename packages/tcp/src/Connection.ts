/**
 * A borrowed TCP or TLS connection: write a request and read the reply as Effects, or hand the Node socket to a
 * library that wants one.
 *
 * Incoming bytes are buffered from the moment the socket opens; `read` takes the oldest chunk or waits for the
 * next one, and `unread` puts back what a parser did not consume. A connection that still has unread bytes when
 * it comes back (a reply the caller did not read) is closed, not reused, as is one whose socket the server ended
 * or reset, one marked with `invalidate`, and one the protocol's `isHealthy` hook rejects.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as net from "node:net"
import type * as tls from "node:tls"
import type * as Endpoint from "./Endpoint.js"
import * as internal from "./internal/connection.js"
import type { SocketError } from "./TcpError.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = internal.TypeId as TypeId

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * @since 0.1.0
 * @category models
 */
export interface Connection {
  readonly [TypeId]: TypeId
  /** Unique in the process, for logs. */
  readonly id: number
  readonly endpoint: Endpoint.Endpoint
  /** The Node socket (a `tls.TLSSocket` for TLS endpoints). Reading it yourself bypasses `read`'s buffer. */
  readonly socket: net.Socket | tls.TLSSocket
  /** The IP address it connected to (one of the host's addresses). */
  readonly address: string
  /** The protocol the server chose by ALPN, if any. */
  readonly alpnProtocol: string | undefined
  /** Times it has been lent, this borrow included. */
  readonly uses: number
  /** Open: neither ended, reset nor closed. */
  readonly isOpen: boolean
  /** Bytes received and not yet read. */
  readonly buffered: number
  /** The next chunk of bytes received, waiting for one if none is buffered; `SocketError` once the socket ended. */
  readonly read: Effect.Effect<Uint8Array, SocketError>
  /** Puts bytes back in front of the buffer, for the next `read`. */
  unread(data: Uint8Array): void
  /** Writes, waiting only when the socket's buffer is full. */
  write(data: string | Uint8Array): Effect.Effect<void, SocketError>
  /** Closes this connection when it is returned instead of reusing it. */
  invalidate(): void
}

/**
 * @since 0.1.0
 * @category refinements
 */
export const isConnection = (u: unknown): u is Connection => typeof u === "object" && u !== null && TypeId in u
