import { assert, describe, it } from "@effect/vitest"
import { Cause, Config, ConfigProvider, Effect, Exit, type Layer, Logger, LogLevel, Redacted } from "effect"
import * as util from "node:util"
import { PgPool } from "../src/index.js"
import * as url from "../src/internal/url.js"

// A URL that is not a well-formed postgres:// URL is an InvalidConfig at construction, which says what is wrong
// and quotes none of it: a malformed URL is where a password ends up in the wrong place.

const secret = "S3cr3t"

const malformed: ReadonlyArray<readonly [string, string, string]> = [
  ["without its scheme", `app:${secret}@127.0.0.1:5433/db`, "does not start with postgres:// or postgresql://"],
  ["with // missing", `postgres:app:${secret}@127.0.0.1:5433/db`, `"//" is missing after "postgres:"`],
  ["with an unencoded / in the password", `postgres://app:${secret}/x@127.0.0.1:5433/db`, `unencoded "/"`],
  ["with an unencoded # in the password", `postgresql://app:${secret}#x@127.0.0.1:5433/db`, `unencoded "/", "?" or "#"`],
  ["that is free text", `the prod database, password ${secret}`, "does not start with postgres://"],
  ["of another scheme", `mysql://app:${secret}@127.0.0.1:3306/db`, "does not start with postgres://"],
  ["with a port that is not a number", `postgres://app:${secret}@127.0.0.1:54x2/db`, "its port is not a number"],
  ["with a port out of range", `postgres://app:${secret}@127.0.0.1:70000/db`, "its port is out of range"],
  ["that names no host", `postgres://app:${secret}@/db`, "it names no host"],
  ["with whitespace around it", ` postgres://app:${secret}@127.0.0.1/db`, "leading or trailing whitespace"]
]

/** Everything a user or a log might show of a failed layer: the secret must be in none of it. */
const everywhere = (exit: Exit.Exit<unknown, unknown>, logs: ReadonlyArray<string>) => {
  assert.isTrue(Exit.isFailure(exit))
  const cause = (exit as Exit.Failure<unknown, unknown>).cause
  const error = Cause.squash(cause)
  return [
    (error as Error).message,
    String(error),
    JSON.stringify(error),
    util.inspect(error, { depth: 10 }),
    Cause.pretty(cause),
    ...logs
  ]
}

const build = <E>(layer: Layer.Layer<PgPool.PgPool, E>) =>
  Effect.gen(function*() {
    const logs: Array<string> = []
    const logger = Logger.make(({ cause, message }) => logs.push(`${String(message)} ${Cause.pretty(cause)}`))
    const exit = yield* Effect.exit(Effect.provide(PgPool.PgPool.stats, layer)).pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
      Logger.withMinimumLogLevel(LogLevel.All)
    )
    return { exit, logs }
  })

describe("PgPool: malformed URLs", () => {
  for (const [what, bad, reason] of malformed) {
    it.live(`a URL ${what}: InvalidConfig saying so, and the password is nowhere`, () =>
      Effect.gen(function*() {
        const started = Date.now()
        const { exit, logs } = yield* build(PgPool.layer({ url: Redacted.make(bad), connectTimeout: "2 seconds" }))
        const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) as { _tag?: string; option?: string } : {}
        assert.strictEqual(error._tag, "InvalidConfig")
        assert.strictEqual(error.option, "url")
        assert.include((error as Error).message, reason)
        for (const shown of everywhere(exit, logs)) {
          assert.notInclude(shown, secret)
          assert.notInclude(shown, "127.0.0.1") // no part of it after the user name
        }
        assert.isBelow(Date.now() - started, 500) // refused at construction: nothing was dialled
      }))
  }

  it.live("the same through layerConfig", () =>
    Effect.gen(function*() {
      const layer = PgPool.layerConfig({ url: Config.redacted("DATABASE_URL") })
      const { exit, logs } = yield* build(layer).pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["DATABASE_URL", `app:${secret}@127.0.0.1:5433/db`]])))
      )
      assert.strictEqual(Exit.isFailure(exit) && (Cause.squash(exit.cause) as { _tag?: string })._tag, "InvalidConfig")
      for (const shown of everywhere(exit, logs)) assert.notInclude(shown, secret)
    }))

  it.live("the driver alone refuses to connect with one: a ConnectionError that quotes nothing", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(PgPool.driver({ url: Redacted.make(`app:${secret}@127.0.0.1:5433/db`) }).connect)
      assert.strictEqual(error._tag, "ConnectionError")
      assert.include(error.message, "invalid connection URL")
      assert.notInclude(JSON.stringify(error) + error.message, secret)
    }))

  it("well-formed URLs pass", () => {
    for (
      const good of [
        "postgres://app@db.example.com/app",
        "postgresql://app:pa%2Fss%23word@127.0.0.1:5432/app?sslmode=disable",
        "postgres://app:p@ss@127.0.0.1/app",
        "postgres://[::1]:5432/app",
        "postgres://%2Fvar%2Frun%2Fpostgresql/app",
        "postgres://app@/app?host=/var/run/postgresql",
        "POSTGRES://app@localhost"
      ]
    ) assert.isUndefined(url.problem(good, false), good)
    assert.isUndefined(url.problem("postgres:///app", true), "no host in the URL, but the host option")
  })
})
