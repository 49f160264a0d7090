import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as net from "node:net"
import type * as tls from "node:tls"
import type * as Connection from "../Connection.js"
import type * as Endpoint from "../Endpoint.js"
import { SocketError } from "../TcpError.js"

/** @internal */
export const TypeId: Connection.TypeId = Symbol.for("@connection-pool/tcp/Connection") as Connection.TypeId

let nextId = 0

type Resume = (effect: Effect.Effect<Uint8Array, SocketError>) => void

/** A request written and its reply being parsed straight from the socket's `data` events (`TcpPool.exchange`). */
interface Exchange {
  readonly parse: (data: Buffer) => readonly [reply: unknown, consumed: number] | undefined
  readonly done: (exit: Exit.Exit<unknown, SocketError>) => void
  buffer: Buffer | undefined
}

/**
 * One socket and what the pool knows of it. Incoming data is buffered in arrival order; a reader waiting for it
 * is resumed straight from the socket's `data` event. The socket's end, close or error is remembered, so that
 * the pool never lends a connection the server closed while it sat idle.
 * @internal
 */
export class ConnectionImpl implements Connection.Connection {
  readonly [TypeId]: Connection.TypeId = TypeId
  readonly id = ++nextId
  uses = 0
  lent = false
  /** Set as it is given back, so that `reusable` applies the release-time rules once. */
  releasing = false
  releasedAt: number
  invalidated = false
  /** Why the socket can no longer be used; `undefined` while it is open. */
  failure: SocketError | undefined = undefined
  private chunks: Array<Uint8Array> = []
  private reader: Resume | undefined = undefined
  private exchange: Exchange | undefined = undefined
  private closing: Effect.Effect<void> | undefined = undefined

  constructor(
    readonly endpoint: Endpoint.Endpoint,
    readonly socket: net.Socket | tls.TLSSocket,
    readonly address: string,
    readonly generation: number,
    readonly createdAt: number,
    private readonly onLost: (conn: ConnectionImpl, error: SocketError) => void
  ) {
    this.releasedAt = createdAt
    socket.on("data", this.onData)
    socket.on("end", this.onEnd)
    socket.on("error", this.onError)
    socket.on("close", this.onClose)
  }

  get isOpen(): boolean {
    return this.failure === undefined && !this.socket.destroyed
  }

  get buffered(): number {
    let n = 0
    for (const chunk of this.chunks) n += chunk.length
    return n
  }

  get alpnProtocol(): string | undefined {
    const protocol = (this.socket as tls.TLSSocket).alpnProtocol
    return typeof protocol === "string" ? protocol : undefined
  }

  readonly read: Effect.Effect<Uint8Array, SocketError> = Effect.suspend(() => {
    if (this.chunks.length > 0) return Effect.succeed(this.chunks.shift()!)
    if (this.failure !== undefined) return Effect.fail(this.failure)
    return Effect.async<Uint8Array, SocketError>((resume) => {
      this.reader = resume
      return Effect.sync(() => {
        if (this.reader === resume) this.reader = undefined
      })
    })
  })

  unread(data: Uint8Array): void {
    if (data.length > 0) this.chunks.unshift(data)
  }

  write(data: string | Uint8Array): Effect.Effect<void, SocketError> {
    return Effect.suspend(() => {
      if (this.failure !== undefined) return Effect.fail(this.failure)
      if (this.socket.write(data)) return Effect.void
      return Effect.async<void, SocketError>((resume) => {
        const drained = () => {
          this.socket.off("close", drained)
          resume(this.failure === undefined ? Effect.void : Effect.fail(this.failure))
        }
        this.socket.once("drain", drained)
        this.socket.once("close", drained)
        return Effect.sync(() => {
          this.socket.off("drain", drained)
          this.socket.off("close", drained)
        })
      })
    })
  }

  invalidate(): void {
    this.invalidated = true
  }

  /** Destroys the socket and completes once its `close` event fired; runs the body once however often called. */
  get close(): Effect.Effect<void> {
    if (this.closing === undefined) {
      this.closing = Effect.async<void>((resume) => {
        this.lose(new SocketError({ endpoint: this.endpoint.key, code: "ECLOSED" }), false)
        if (this.socket.closed) return resume(Effect.void)
        this.socket.once("close", () => resume(Effect.void))
        this.socket.destroy()
      })
    }
    return this.closing
  }

  /**
   * Writes `request` and parses the reply as it arrives, calling `done` once with it (or with the socket's
   * failure). Bytes after the reply stay buffered for the next reader.
   */
  startExchange(
    request: string | Uint8Array,
    parse: Exchange["parse"],
    done: Exchange["done"]
  ): void {
    if (this.failure !== undefined) return done(Exit.fail(this.failure))
    const exchange: Exchange = { parse, done, buffer: undefined }
    this.exchange = exchange
    this.socket.write(request)
    while (this.chunks.length > 0 && this.exchange === exchange) this.feed(exchange, this.chunks.shift()!)
  }

  /** The caller gave up (interrupted): the reply is no longer wanted; the pool closes the connection. */
  cancelExchange(): void {
    this.exchange = undefined
  }

  private feed(exchange: Exchange, chunk: Uint8Array): void {
    const data = exchange.buffer === undefined
      ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length)
      : Buffer.concat([exchange.buffer, chunk])
    let parsed: readonly [unknown, number] | undefined
    try {
      parsed = exchange.parse(data)
    } catch (defect) {
      this.exchange = undefined
      return exchange.done(Exit.die(defect))
    }
    if (parsed === undefined) {
      exchange.buffer = data
      return
    }
    this.exchange = undefined
    if (parsed[1] < data.length) this.chunks.unshift(data.subarray(parsed[1]))
    exchange.done(Exit.succeed(parsed[0]))
  }

  private readonly onData = (chunk: Uint8Array) => {
    const exchange = this.exchange
    if (exchange !== undefined) return this.feed(exchange, chunk)
    const reader = this.reader
    if (reader !== undefined) {
      this.reader = undefined
      reader(Effect.succeed(chunk))
    } else this.chunks.push(chunk)
  }

  private readonly onEnd = () => this.lose(new SocketError({ endpoint: this.endpoint.key, code: "EOF" }), true)

  private readonly onError = (cause: Error) =>
    this.lose(new SocketError({ endpoint: this.endpoint.key, code: codeOf(cause), cause }), true)

  private readonly onClose = () => this.lose(new SocketError({ endpoint: this.endpoint.key, code: "EOF" }), true)

  private lose(error: SocketError, byPeer: boolean): void {
    if (this.failure !== undefined) return
    this.failure = error
    const reader = this.reader
    this.reader = undefined
    reader?.(Effect.fail(error))
    const exchange = this.exchange
    this.exchange = undefined
    exchange?.done(Exit.fail(error))
    if (byPeer) this.onLost(this, error)
  }
}

/** @internal */
export const codeOf = (error: unknown): string => {
  const code = (error as { code?: unknown } | undefined)?.code
  return typeof code === "string" ? code : "EUNKNOWN"
}
