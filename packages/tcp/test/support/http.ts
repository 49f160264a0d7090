/** A minimal HTTP/1.1 exchange over a pooled connection: GET, then read the head and a content-length body. */
import type { Connection } from "@connection-pool/tcp"
import { Effect } from "effect"

export interface Response {
  readonly status: number
  readonly body: string
  readonly keepAlive: boolean
}

const headEnd = Buffer.from("\r\n\r\n")

export const get = (conn: Connection.Connection, path = "/", host = "localhost") =>
  Effect.zipRight(conn.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`), readResponse(conn))

export const readResponse = (conn: Connection.Connection) => {
  const loop = (buf: Buffer): Effect.Effect<Response, import("@connection-pool/tcp").TcpError.SocketError> =>
    Effect.flatMap(conn.read, (chunk) => {
      const all = buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([buf, chunk])
      const end = all.indexOf(headEnd)
      if (end === -1) return loop(all)
      const head = all.toString("latin1", 0, end)
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0)
      const total = end + 4 + length
      if (all.length < total) return loop(all)
      if (all.length > total) conn.unread(all.subarray(total))
      return Effect.succeed({
        status: Number(head.slice(9, 12)),
        body: all.toString("utf8", end + 4, total),
        keepAlive: !/\r\nconnection: *close/i.test(head)
      })
    })
  return loop(Buffer.alloc(0))
}
