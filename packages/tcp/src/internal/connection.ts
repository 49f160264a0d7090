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

/** Parses a reply from the bytes received so far: the reply and the bytes it took, or `undefined` for more. */
type Parse = (data: Buffer) => readonly [reply: unknown, consumed: number] | undefined

/** Called once an exchange ends, with the reply or the socket's failure. */
type Done = (exit: Exit.Exit<unknown, SocketError>) => void

/** The endpoint a connection belongs to: told when it is lent and given back, and when its socket is lost. @internal */
export interface Owner {
  lend(conn: ConnectionImpl): void
  giveBack(conn: ConnectionImpl): void
  /** The socket ended or failed under the pool. */
  lost(conn: ConnectionImpl, error: SocketError): void
}

/** A chunk as a `Buffer`: a socket's chunks already are one; bytes given to `unread` may not be. */
const asBuffer = (chunk: Uint8Array): Buffer =>
  Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length)

/** `read` until `parse` finds a whole reply; the rest goes back to the buffer. @internal */
export const readParsed = <X>(
  conn: Connection.Connection,
  parse: (data: Buffer) => readonly [reply: X, consumed: number] | undefined
): Effect.Effect<X, SocketError> => {
  const loop = (buffer: Buffer | undefined): Effect.Effect<X, SocketError> =>
    Effect.flatMap(conn.read, (chunk) => {
      const data = buffer === undefined ? asBuffer(chunk) : Buffer.concat([buffer, chunk])
      const parsed = parse(data)
      if (parsed === undefined) return loop(data)
      if (parsed[1] < data.length) conn.unread(data.subarray(parsed[1]))
      return Effect.succeed(parsed[0])
    })
  return loop(undefined)
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
  /**
   * The exchange in progress (`TcpPool.exchange`), its reply parsed straight from the socket's `data` events: in
   * plain fields rather than an object per request, as at most one runs at a time. `done` is set while one runs.
   */
  private parse: Parse | undefined = undefined
  private done: Done | undefined = undefined
  private partial: Buffer | undefined = undefined
  private closing: Effect.Effect<void> | undefined = undefined

  constructor(
    readonly endpoint: Endpoint.Endpoint,
    readonly socket: net.Socket | tls.TLSSocket,
    readonly address: string,
    readonly generation: number,
    readonly createdAt: number,
    readonly owner: Owner
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
   * Lends the connection, writes `request` and parses the reply as it arrives, then gives the connection back to
   * its owner and calls `done` once with the reply (or with the socket's failure). Bytes after the reply stay
   * buffered for the next reader.
   */
  startExchange(request: string | Uint8Array, parse: Parse, done: Done): void {
    this.owner.lend(this)
    if (this.failure !== undefined) {
      this.owner.giveBack(this)
      return done(Exit.fail(this.failure))
    }
    this.parse = parse
    this.done = done
    this.partial = undefined
    this.socket.write(request)
    while (this.chunks.length > 0 && this.done === done) this.feed(this.chunks.shift()!)
  }

  /** The caller gave up (interrupted): the reply is no longer wanted; the pool closes the connection. */
  readonly cancelExchange: Effect.Effect<void> = Effect.sync(() => void this.endExchange())

  /** Ends the exchange in progress, if any, and gives the connection back: its `done` is the caller's to call. */
  private endExchange(): Done | undefined {
    const done = this.done
    if (done === undefined) return undefined
    this.parse = undefined
    this.done = undefined
    this.partial = undefined
    this.owner.giveBack(this)
    return done
  }

  private feed(chunk: Uint8Array): void {
    const data = this.partial === undefined ? asBuffer(chunk) : Buffer.concat([this.partial, chunk])
    let parsed: readonly [unknown, number] | undefined
    try {
      parsed = this.parse!(data)
    } catch (defect) {
      return this.endExchange()!(Exit.die(defect))
    }
    if (parsed === undefined) {
      this.partial = data
      return
    }
    const done = this.endExchange()!
    if (parsed[1] < data.length) this.chunks.unshift(data.subarray(parsed[1]))
    done(Exit.succeed(parsed[0]))
  }

  private readonly onData = (chunk: Uint8Array) => {
    if (this.done !== undefined) return this.feed(chunk)
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
    this.endExchange()?.(Exit.fail(error))
    if (byPeer) this.owner.lost(this, error)
  }
}

/** @internal */
export const codeOf = (error: unknown): string => {
  const code = (error as { code?: unknown } | undefined)?.code
  return typeof code === "string" ? code : "EUNKNOWN"
}
