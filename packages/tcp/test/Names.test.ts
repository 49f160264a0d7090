import { layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { assertNoNames, namesPerPath } from "../../core/test/support/namesChild.js"
import { type Redis, redis } from "./support/servers.js"

class Server extends Context.Tag("test/NamesRedis")<Server, Redis>() {}

// Under tsx, esbuild's keepNames wraps every closure bound to a name in a `__name` call, paid per request where
// the closure is made per request (`withConnection` made one until this test). See the core's Names.test.ts.
layer(Layer.scoped(Server, redis), { timeout: 30_000, excludeTestServices: true })("under tsx's keepNames", (it) => {
  it.effect("no request's path names a closure", () =>
    Effect.gen(function*() {
      const { port } = yield* Server
      const here = path.dirname(fileURLToPath(import.meta.url))
      const perRequest = yield* Effect.promise(() => namesPerPath(here, { NAMES_REDIS_PORT: String(port) }))
      assertNoNames(perRequest, ["exchange", "withConnection", "connection, scoped"], "request")
    }), 90_000)
})
