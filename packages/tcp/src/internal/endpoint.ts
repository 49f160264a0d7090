import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Equal from "effect/Equal"
import * as Hash from "effect/Hash"
import { pipeArguments } from "effect/Pipeable"
import { hasProperty } from "effect/Predicate"
import * as net from "node:net"
import type * as Endpoint from "../Endpoint.js"
import { InvalidEndpoint } from "../TcpError.js"

/** @internal */
export const TypeId: Endpoint.TypeId = Symbol.for("@connection-pool/tcp/Endpoint") as Endpoint.TypeId

/** @internal */
export const isEndpoint = (u: unknown): u is Endpoint.Endpoint => hasProperty(u, TypeId)

/** Ports of the URL schemes that name one, and whether they mean TLS. */
const schemes: Record<string, readonly [port: number, secure: boolean]> = {
  "http:": [80, false],
  "https:": [443, true],
  "ws:": [80, false],
  "wss:": [443, true],
  "redis:": [6379, false],
  "rediss:": [6379, true],
  "postgres:": [5432, false],
  "postgresql:": [5432, false],
  "tcp:": [0, false],
  "tls:": [0, true]
}

class EndpointImpl implements Endpoint.Endpoint {
  readonly [TypeId]: Endpoint.TypeId = TypeId
  readonly key: string
  constructor(readonly host: string, readonly port: number, readonly secure: boolean) {
    const host_ = net.isIPv6(host) ? `[${host}]` : host
    this.key = `${secure ? "tls://" : ""}${host_}:${port}`
  }
  get authority(): string {
    return `${net.isIPv6(this.host) ? `[${this.host}]` : this.host}:${this.port}`
  }
  [Equal.symbol](that: unknown): boolean {
    return isEndpoint(that) && that.key === this.key
  }
  [Hash.symbol](): number {
    return Hash.cached(this, Hash.string(this.key))
  }
  toString(): string {
    return this.key
  }
  toJSON(): unknown {
    return { _id: "Endpoint", host: this.host, port: this.port, secure: this.secure }
  }
  pipe() {
    return pipeArguments(this, arguments)
  }
}

const hostLabel = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/i

const checkHost = (host: unknown): string | undefined => {
  if (typeof host !== "string" || host.length === 0) return "the host is empty"
  if (net.isIP(host) !== 0) return undefined
  if (host.length > 253) return "the host name is longer than 253 characters"
  const labels = host.endsWith(".") ? host.slice(0, -1).split(".") : host.split(".")
  if (!labels.every((label) => hostLabel.test(label))) return "the host is neither an IP address nor a host name"
  return undefined
}

const checkPort = (port: unknown): string | undefined =>
  typeof port === "number" && Number.isInteger(port) && port >= 1 && port <= 65535
    ? undefined
    : "the port must be an integer from 1 to 65535"

const fromParts = (
  input: string,
  host: unknown,
  port: unknown,
  secure: boolean
): Either.Either<Endpoint.Endpoint, InvalidEndpoint> => {
  const h = typeof host === "string" && host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host
  const reason = checkHost(h) ?? checkPort(port)
  return reason === undefined
    ? Either.right(new EndpointImpl((h as string).toLowerCase(), port as number, secure))
    : Either.left(new InvalidEndpoint({ input, reason }))
}

const fromUrl = (url: URL): Either.Either<Endpoint.Endpoint, InvalidEndpoint> => {
  const scheme = schemes[url.protocol]
  const port = url.port === "" ? scheme?.[0] ?? 0 : Number(url.port)
  if (port === 0) {
    return Either.left(new InvalidEndpoint({ input: redact(url), reason: `no port, and ${url.protocol} has none` }))
  }
  return fromParts(redact(url), url.hostname, port, scheme?.[1] ?? false)
}

/** A URL as shown in errors: its password never. */
const redact = (url: URL): string => {
  if (url.password === "") return url.href
  const copy = new URL(url.href)
  copy.password = "***"
  return copy.href
}

const fromString = (input: string): Either.Either<Endpoint.Endpoint, InvalidEndpoint> => {
  const trimmed = input.trim()
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) {
    let url: URL
    try {
      url = new URL(trimmed)
    } catch {
      return Either.left(new InvalidEndpoint({ input: trimmed.replace(/\/\/[^@/]*@/, "//***@"), reason: "not a URL" }))
    }
    return fromUrl(url)
  }
  const match = /^(\[[^\]]*\]|[^:]*):(\d{1,5})$/.exec(trimmed)
  if (match === null) return Either.left(new InvalidEndpoint({ input, reason: "expected host:port or a URL" }))
  return fromParts(input, match[1], Number(match[2]), false)
}

/** @internal */
export const decode = (input: Endpoint.Input): Either.Either<Endpoint.Endpoint, InvalidEndpoint> => {
  if (isEndpoint(input)) return Either.right(input)
  if (typeof input === "string") return fromString(input)
  if (input instanceof URL) return fromUrl(input)
  if (hasProperty(input, "host")) {
    return fromParts(`${String(input.host)}:${String(input.port)}`, input.host, input.port, input.secure === true)
  }
  const reason = "expected host:port, a URL or { host, port }"
  return Either.left(new InvalidEndpoint({ input: String(input), reason }))
}

/** @internal */
export const make = (input: Endpoint.Input): Effect.Effect<Endpoint.Endpoint, InvalidEndpoint> => decode(input)

/** @internal */
export const unsafeMake = (input: Endpoint.Input): Endpoint.Endpoint =>
  Either.getOrThrowWith(decode(input), (error) => new Error(error.message))
