/**
 * Where a pool connects: a host (a name or an IP address), a port, and whether the connection is TLS.
 *
 * ```ts
 * import { Endpoint } from "@connection-pool/tcp"
 *
 * Endpoint.make("localhost:6379")            // Effect<Endpoint, InvalidEndpoint>
 * Endpoint.make("rediss://cache.internal")   // port 6379, TLS
 * Endpoint.make({ host: "10.0.0.5", port: 8080 })
 * ```
 *
 * Two endpoints are `Equal` when their `key`s are: the lower-cased host, the port and the TLS flag.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import type * as Equal from "effect/Equal"
import type { Pipeable } from "effect/Pipeable"
import * as internal from "./internal/endpoint.js"
import type { InvalidEndpoint } from "./TcpError.js"

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
export interface Endpoint extends Equal.Equal, Pipeable {
  readonly [TypeId]: TypeId
  /** The host name (lower-cased) or IP address, without brackets. */
  readonly host: string
  readonly port: number
  /** TLS, from a `https:` / `rediss:` / `wss:` / `tls:` URL or `{ secure: true }`. */
  readonly secure: boolean
  /** `host:port` with IPv6 addresses bracketed, prefixed `tls://` when secure: the pool's key for it. */
  readonly key: string
  /** `host:port`, IPv6 bracketed. */
  readonly authority: string
}

/**
 * What {@link make} accepts: `"host:port"`, a URL whose scheme gives the port when it has none (`http`, `https`,
 * `redis`, `rediss`, `postgres`, `ws`, `wss`), `{ host, port, secure? }`, or an `Endpoint`.
 *
 * @since 0.1.0
 * @category models
 */
export type Input =
  | string
  | URL
  | Endpoint
  | { readonly host: string; readonly port: number; readonly secure?: boolean | undefined }

/**
 * @since 0.1.0
 * @category refinements
 */
export const isEndpoint: (u: unknown) => u is Endpoint = internal.isEndpoint

/**
 * Checks the host (an IP address or a well-formed host name) and the port (1 to 65535).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (input: Input) => Effect.Effect<Endpoint, InvalidEndpoint> = internal.make

/**
 * {@link make} as an `Either`, for synchronous code.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decode: (input: Input) => Either.Either<Endpoint, InvalidEndpoint> = internal.decode

/**
 * {@link make} that throws on bad input: for constants in code.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unsafeMake: (input: Input) => Endpoint = internal.unsafeMake
