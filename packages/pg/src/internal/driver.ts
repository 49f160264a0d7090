import * as ConnectionPool from "@connection-pool/core/ConnectionPool"
import { ConnectionError } from "@connection-pool/core/PoolError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as net from "node:net"
import type { ConnectionOptions } from "node:tls"
import pg from "pg"
import * as session from "./session.js"
import * as url from "./url.js"

/** Where and how to connect; the password stays `Redacted` until the driver's call to `pg`. @internal */
export interface ConnectOptions {
  /**
   * A `postgres://` or `postgresql://` URL (user name and password percent-encoded). Anything else is an
   * `InvalidConfig` when the pool is built, which says what is wrong and quotes none of the URL.
   */
  readonly url?: Redacted.Redacted | undefined
  readonly host?: string | undefined
  readonly port?: number | undefined
  readonly database?: string | undefined
  readonly username?: string | undefined
  readonly password?: Redacted.Redacted | undefined
  readonly ssl?: boolean | ConnectionOptions | undefined
  readonly applicationName?: string | undefined
  readonly types?: pg.CustomTypesConfig | undefined
  /** How long pg may take to connect (TCP, TLS and authentication) before the connect fails. */
  readonly connectTimeout?: Duration.DurationInput | undefined
}

/** The target as it appears in messages: never a password. @internal */
export interface Target {
  readonly host: string
  readonly port: number
  readonly database: string
  readonly user: string
}

/** @internal */
export const target = (options: ConnectOptions): Target => {
  const parsed = options.url && urlProblem(options) === undefined ? url.parts(Redacted.value(options.url)) : {}
  const host = options.host ?? parsed.host ?? "localhost"
  const user = options.username ?? parsed.user ?? process.env["PGUSER"] ?? "postgres"
  return {
    host,
    port: options.port ?? (parsed.port ? Number(parsed.port) : 5432),
    database: options.database ?? parsed.database ?? user,
    user
  }
}

/** The options `pg` itself takes, secrets unwrapped: for `pg` only. @internal */
export const clientConfig = (options: ConnectOptions): pg.ClientConfig => ({
  ...(options.url ? { connectionString: Redacted.value(options.url) } : {}),
  ...(options.host !== undefined ? { host: options.host } : {}),
  ...(options.port !== undefined ? { port: options.port } : {}),
  ...(options.database !== undefined ? { database: options.database } : {}),
  ...(options.username !== undefined ? { user: options.username } : {}),
  ...(options.password !== undefined ? { password: Redacted.value(options.password) } : {}),
  ...(options.ssl !== undefined ? { ssl: options.ssl } : {}),
  ...(options.types !== undefined ? { types: options.types } : {}),
  application_name: options.applicationName ?? "@connection-pool/pg",
  connectionTimeoutMillis: Duration.toMillis(options.connectTimeout ?? Duration.seconds(10))
})

/** Connection-class SQLSTATEs and socket failures: the session is gone or going. @internal */
export const isConnectionFailure = session.isConnectionFailure

const capacityMessage = /too many clients already|remaining connection slots are reserved/i

/**
 * The server refused a new session for want of room (53300: max_connections reached, or the slots left are
 * reserved), not because it is down. @internal
 */
export const isAtCapacity = (error: unknown): boolean => {
  const e = (typeof error === "object" && error !== null ? error : {}) as { code?: unknown; message?: unknown }
  return e.code === "53300" || (typeof e.message === "string" && capacityMessage.test(e.message))
}

/** Why a connect failed, in words that name the server and never a secret. @internal */
export const describe = (error: unknown, t: Target, secrets: ReadonlyArray<string>): string => {
  const e = (typeof error === "object" && error !== null ? error : {}) as { code?: string; message?: string }
  const where = `PostgreSQL at ${t.host}:${t.port}/${t.database} as ${t.user}`
  let why: string
  switch (e.code) {
    case "ECONNREFUSED":
      why = "connection refused (is the server running and listening on that port?)"
      break
    case "ENOTFOUND":
    case "EAI_AGAIN":
    case "EAI_NONAME":
      why = `DNS lookup of "${t.host}" failed (${e.code})`
      break
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      why = `host unreachable (${e.code})`
      break
    case "ECONNRESET":
      why = "the server closed the connection during the handshake"
      break
    case "28P01":
      why = `password authentication failed for user "${t.user}"`
      break
    case "28000":
      why = `authentication rejected for user "${t.user}" (pg_hba.conf or role)`
      break
    case "3D000":
      why = `database "${t.database}" does not exist`
      break
    case "57P03":
      why = "the server is starting up or shutting down"
      break
    default: {
      const message = e.message ?? String(error)
      if (isAtCapacity(error)) {
        why = "too many connections: the server's max_connections is reached"
      } else if (/timeout expired|connection timeout/i.test(message)) {
        why = "no answer within the connect timeout (host unreachable, firewalled, or the server is not responding)"
      } else if (
        /ssl|tls|certificate|self[- ]signed/i.test(message) || e.code?.startsWith("ERR_TLS") || e.code?.includes("CERT")
      ) {
        why = `TLS negotiation failed: ${message}`
      } else {
        why = message
      }
    }
  }
  for (const secret of secrets) if (secret.length > 0) why = why.split(secret).join("***")
  return `could not connect to ${where}: ${why}`
}

/** @internal */
export const cancel = session.cancel

/** @internal */
export const markBroken = session.markBroken

/** @internal */
export const reusable = session.reusable

const socketOf = (client: pg.Client): net.Socket =>
  (client as unknown as { connection: { stream: net.Socket } }).connection.stream

/** @internal */
export const make = (options: ConnectOptions): ConnectionPool.Driver<pg.Client> => {
  const t = target(options)
  const secrets = [
    ...(options.password ? [Redacted.value(options.password)] : []),
    ...(options.url ? [url.password(Redacted.value(options.url))] : [])
  ]
  const invalid = urlProblem(options)
  const config = invalid === undefined ? clientConfig(options) : undefined
  const connect = Effect.async<pg.Client, ConnectionError>((resume) => {
    if (config === undefined) {
      return resume(Effect.fail(new ConnectionError({ reason: `invalid connection URL: ${invalid}` })))
    }
    let client: session.PoolClient
    try {
      client = new session.PoolClient(config)
    } catch (error) {
      return resume(Effect.fail(new ConnectionError({ reason: describe(error, t, secrets) })))
    }
    client.connect((error: Error | undefined) => {
      if (error) {
        client.end().catch(() => {})
        resume(Effect.fail(
          new ConnectionError({ reason: describe(error, t, secrets), cause: error, atCapacity: isAtCapacity(error) })
        ))
      } else {
        resume(Effect.succeed(client))
      }
    })
    return Effect.sync(() => void client.end().catch(() => {}))
  })
  return {
    connect,
    close: (client) =>
      Effect.zipRight(
        session.cancelBeforeClose(client),
        Effect.promise(() => client.end().catch(() => {})).pipe(
          Effect.timeoutOption(Duration.seconds(2)),
          Effect.tap((ended) => ended._tag === "None" ? Effect.sync(() => socketOf(client).destroy()) : Effect.void)
        )
      ),
    validate: (client) =>
      reusable(client)
        ? Effect.async<boolean>((resume) => {
          client.query("SELECT 1", (error: Error | null) => resume(Effect.succeed(!error)))
        })
        : Effect.succeed(false),
    reusable
  }
}

/** What is wrong with `options.url`, if anything (never quoting it). @internal */
export const urlProblem = (options: ConnectOptions): string | undefined => {
  if (options.url === undefined) return undefined
  if (!Redacted.isRedacted(options.url)) return "pass it as a Redacted (Redacted.make, or Config.redacted)"
  return url.problem(Redacted.value(options.url), options.host !== undefined)
}
