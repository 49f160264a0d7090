/// <reference path="./harness/provided.d.ts" />
import { Effect, Redacted } from "effect"
import pg from "pg"
import { inject } from "vitest"
import { PgPool } from "../src/index.js"
import type { PgPoolConfig } from "../src/PgPool.js"

export const suiteUrl = (): string => inject("pgUrl")

let n = 0
/** Options for a pool on `url` whose connections are recognisable in pg_stat_activity by their application name. */
export const options = (url: string, extra: Partial<PgPoolConfig> = {}): PgPoolConfig & { applicationName: string } => ({
  url: Redacted.make(url),
  maxSize: 10,
  acquireTimeout: "5 seconds",
  connectTimeout: "2 seconds",
  ...extra,
  applicationName: extra.applicationName ?? `cp-test-${process.pid}-${++n}`
})

/** One statement on a connection of its own, outside any pool. */
export const admin = <R extends pg.QueryResultRow = Record<string, any>>(
  url: string,
  text: string,
  values?: ReadonlyArray<unknown>
): Effect.Effect<Array<R>> =>
  Effect.promise(async () => {
    const client = new pg.Client({ connectionString: url })
    client.on("error", () => {})
    await client.connect()
    try {
      return (await client.query<R>(text, values as Array<unknown>)).rows
    } finally {
      await client.end().catch(() => {})
    }
  })

/** Our application's sessions as the server sees them. */
export const serverSessions = (url: string, applicationName: string) =>
  Effect.map(
    admin<{ n: string }>(url, "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1", [
      applicationName
    ]),
    (rows) => Number(rows[0].n)
  )

/** Waits until the server shows as many of our sessions as the pool counts open connections. */
export const sessionsMatchPool = (url: string, applicationName: string) =>
  waitFor(
    Effect.zip(serverSessions(url, applicationName), PgPool.PgPool.stats),
    ([server, stats]) => server === stats.total
  )

/** Polls on the live clock until `until` holds, up to `seconds`. */
export const waitFor = <A, E, R>(effect: Effect.Effect<A, E, R>, until: (a: A) => boolean, seconds = 10) =>
  Effect.gen(function*() {
    const deadline = Date.now() + seconds * 1000
    let last: A
    do {
      last = yield* effect
      if (until(last)) return last
      yield* Effect.sleep("25 millis")
    } while (Date.now() < deadline)
    return yield* Effect.dieMessage(`condition not met within ${seconds}s; last value: ${JSON.stringify(last)}`)
  })

/** Runs a promise-returning harness call as an Effect. */
export const io = <A>(f: () => Promise<A>) => Effect.promise(f)
