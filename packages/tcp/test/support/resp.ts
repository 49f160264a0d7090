/**
 * A small RESP2 client over a pooled connection, enough for the tests and the benchmark: commands as arrays of
 * bulk strings, one reply parsed per command, leftovers put back for the next read.
 */
import type { Connection } from "@connection-pool/tcp"
import { Data, Effect } from "effect"

export type Reply = string | number | null | ReadonlyArray<Reply> | RedisError

export class RedisError extends Data.TaggedError("RedisError")<{ readonly message: string }> {}

export const encode = (args: ReadonlyArray<string>): string => {
  let out = `*${args.length}\r\n`
  for (const a of args) out += `$${Buffer.byteLength(a)}\r\n${a}\r\n`
  return out
}

/** Parses one reply at `offset`; `undefined` when `buf` does not hold all of it yet. */
const parse = (buf: Buffer, offset: number): readonly [Reply, number] | undefined => {
  const eol = buf.indexOf("\r\n", offset)
  if (eol === -1) return undefined
  const line = buf.toString("utf8", offset + 1, eol)
  const next = eol + 2
  switch (buf[offset]) {
    case 43: // +
      return [line, next]
    case 45: // -
      return [new RedisError({ message: line }), next]
    case 58: // :
      return [Number(line), next]
    case 36: { // $
      const n = Number(line)
      if (n < 0) return [null, next]
      if (buf.length < next + n + 2) return undefined
      return [buf.toString("utf8", next, next + n), next + n + 2]
    }
    case 42: { // *
      const n = Number(line)
      if (n < 0) return [null, next]
      const items: Array<Reply> = []
      let at = next
      for (let i = 0; i < n; i++) {
        const item = parse(buf, at)
        if (item === undefined) return undefined
        items.push(item[0])
        at = item[1]
      }
      return [items, at]
    }
    default:
      throw new Error(`not RESP: ${JSON.stringify(buf.toString("utf8", offset, offset + 20))}`)
  }
}

/** Reads exactly one reply from `conn`. */
export const readReply = (conn: Connection.Connection) => {
  const loop = (buf: Buffer): Effect.Effect<Reply, import("@connection-pool/tcp").TcpError.SocketError> =>
    Effect.flatMap(conn.read, (chunk) => {
      const all = buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([buf, chunk])
      const parsed = parse(all, 0)
      if (parsed === undefined) return loop(all)
      if (parsed[1] < all.length) conn.unread(all.subarray(parsed[1]))
      return Effect.succeed(parsed[0])
    })
  return loop(Buffer.alloc(0))
}

export const command = (conn: Connection.Connection, ...args: ReadonlyArray<string>) =>
  Effect.zipRight(conn.write(encode(args)), readReply(conn))

/** Replies still owed per connection: a connection returned with one pending is closed, never reused. */
const pending = new WeakMap<Connection.Connection, number>()

/** `command`, counting the reply as pending until it is read. */
export const tracked = (conn: Connection.Connection, ...args: ReadonlyArray<string>) =>
  Effect.suspend(() => {
    pending.set(conn, (pending.get(conn) ?? 0) + 1)
    return Effect.tap(command(conn, ...args), () => Effect.sync(() => pending.set(conn, pending.get(conn)! - 1)))
  })

/** Sends without reading the reply. */
export const send = (conn: Connection.Connection, ...args: ReadonlyArray<string>) =>
  Effect.suspend(() => {
    pending.set(conn, (pending.get(conn) ?? 0) + 1)
    return conn.write(encode(args))
  })

/** The hooks of a Redis client: reuse only with no reply pending; `PING` to validate. */
export const protocol = {
  isHealthy: (conn: Connection.Connection) => (pending.get(conn) ?? 0) === 0,
  validate: (conn: Connection.Connection) =>
    command(conn, "PING").pipe(Effect.map((r) => r === "PONG"), Effect.orElseSucceed(() => false))
}
