import { Endpoint } from "@connection-pool/tcp"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Equal } from "effect"

const reason = (input: Endpoint.Input) => {
  const decoded = Endpoint.decode(input)
  assert.isTrue(Either.isLeft(decoded), `expected ${String(input)} to be rejected`)
  return Either.isLeft(decoded) ? decoded.left : undefined!
}

describe("Endpoint", () => {
  it.effect("from { host, port }, host:port and URLs", () =>
    Effect.gen(function*() {
      const a = yield* Endpoint.make({ host: "Cache.Internal", port: 6379 })
      assert.strictEqual(a.host, "cache.internal")
      assert.strictEqual(a.key, "cache.internal:6379")
      assert.isTrue(Equal.equals(a, yield* Endpoint.make("cache.internal:6379")))
      const b = yield* Endpoint.make("rediss://:secret@cache.internal")
      assert.deepStrictEqual([b.port, b.secure, b.key], [6379, true, "tls://cache.internal:6379"])
      const c = yield* Endpoint.make(new URL("http://example.com/path"))
      assert.deepStrictEqual([c.host, c.port, c.secure], ["example.com", 80, false])
      const d = yield* Endpoint.make("[::1]:8080")
      assert.deepStrictEqual([d.host, d.port, d.authority], ["::1", 8080, "[::1]:8080"])
      assert.strictEqual((yield* Endpoint.make("https://127.0.0.1:8443")).key, "tls://127.0.0.1:8443")
    }))

  it("a bad host or port is an InvalidEndpoint with a reason", () => {
    assert.include(reason({ host: "", port: 80 }).message, "host is empty")
    assert.include(reason({ host: "a b", port: 80 }).message, "neither an IP address nor a host name")
    assert.include(reason({ host: "x", port: 0 }).message, "1 to 65535")
    assert.include(reason({ host: "x", port: 70000 }).message, "1 to 65535")
    assert.include(reason({ host: "x", port: 1.5 }).message, "1 to 65535")
    assert.include(reason("localhost").message, "expected host:port or a URL")
    assert.include(reason("foo://host").message, "no port")
    assert.strictEqual(reason("-bad-.com:1")._tag, "InvalidEndpoint")
  })

  it("a URL's password never reaches the error", () => {
    const error = reason("foo://user:hunter2@host")
    assert.notInclude(error.message, "hunter2")
    assert.notInclude(JSON.stringify(error), "hunter2")
  })
})
