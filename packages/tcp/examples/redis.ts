import { type Connection, TcpPool } from "@connection-pool/tcp"
import { Data, Effect } from "effect"

class RedisError extends Data.TaggedError("RedisError")<{ readonly message: string }> {}

// Replies owed per connection: one returned with a reply still pending is closed, never lent again.
const pending = new WeakMap<Connection.Connection, number>()

/** One command, one reply (simple, error, integer or bulk string), in RESP. */
export const command = (conn: Connection.Connection, ...args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    pending.set(conn, (pending.get(conn) ?? 0) + 1)
    yield* conn.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`)
    let buffer = Buffer.alloc(0)
    for (;;) {
      buffer = Buffer.concat([buffer, yield* conn.read])
      const eol = buffer.indexOf("\r\n")
      if (eol === -1) continue
      const line = buffer.toString("utf8", 1, eol)
      let end = eol + 2
      let reply: string | number | null = line
      if (buffer[0] === 0x24) { // "$": a bulk string of `line` bytes
        const length = Number(line)
        if (length >= 0 && buffer.length < end + length + 2) continue
        reply = length < 0 ? null : buffer.toString("utf8", end, end + length)
        end = length < 0 ? end : end + length + 2
      } else if (buffer[0] === 0x3a) reply = Number(line) // ":"
      if (end < buffer.length) conn.unread(buffer.subarray(end))
      pending.set(conn, pending.get(conn)! - 1)
      if (buffer[0] === 0x2d) return yield* new RedisError({ message: line }) // "-"
      return reply
    }
  })

export const RedisPool = TcpPool.layer({
  maxConnectionsPerEndpoint: 8,
  idleTimeout: "1 minute",
  connectRetries: 3,
  protocol: {
    onCreate: (conn) => command(conn, "SELECT", "1"), // a handshake: AUTH, SELECT, HELLO
    isHealthy: (conn) => (pending.get(conn) ?? 0) === 0,
    validate: (conn) => command(conn, "PING").pipe(Effect.map((r) => r === "PONG"), Effect.orElseSucceed(() => false))
  }
})

export const program = (endpoint: string) =>
  Effect.gen(function*() {
    yield* TcpPool.withConnection(endpoint, (conn) => command(conn, "SET", "greeting", "hello"))
    const greeting = yield* TcpPool.withConnection(endpoint, (conn) => command(conn, "GET", "greeting"))
    const stats = yield* TcpPool.stats(endpoint)
    return { greeting, stats }
  }).pipe(Effect.provide(RedisPool))
