import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as fs from "node:fs"
import type * as net from "node:net"
import * as path from "node:path"
import * as tls from "node:tls"
import { program } from "../examples/redis.js"
import { HttpsPool, status } from "../examples/tls.js"
import { certificates, redis } from "./support/servers.js"

const root = path.resolve(__dirname, "../../..")
const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")

describe("README, TCP section", () => {
  for (const file of ["redis.ts", "tls.ts"]) {
    it(`its example examples/${file} is in the README verbatim (so tsc -b type-checks it)`, () => {
      const example = fs.readFileSync(path.join(__dirname, "../examples", file), "utf8")
      assert.include(readme, "```ts\n" + example + "```")
    })
  }

  it.live("the Redis example runs against a real redis-server", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* redis
      const { greeting, stats } = yield* program(`127.0.0.1:${server.port}`)
      assert.strictEqual(greeting, "hello")
      const s = Option.getOrThrow(stats)
      assert.deepStrictEqual([s.created, s.reused], [1, 1])
    })))

  it.live("the TLS example runs against a node:tls server, and refuses the wrong CA", () =>
    Effect.scoped(Effect.gen(function*() {
      const certs = yield* certificates(["localhost"])
      const server = tls.createServer({ ...certs.leaf("localhost"), ALPNProtocols: ["http/1.1"] }, (socket) => {
        socket.on("error", () => {})
        socket.once("data", () => socket.end("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"))
      })
      const port = yield* Effect.acquireRelease(
        Effect.async<number>((resume) => {
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as net.AddressInfo).port)))
        }),
        () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
      )
      const url = `https://localhost:${port}`
      assert.strictEqual(yield* Effect.provide(status(url), HttpsPool(certs.ca)), "200 via http/1.1")
      const refused = yield* Effect.provide(status(url), HttpsPool(certs.otherCa))
      assert.match(refused, /^TLS refused \(unknown-ca\)/)
    })))
})
