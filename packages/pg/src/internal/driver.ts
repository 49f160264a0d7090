import * as ConnectionPool from "@connection-pool/core/ConnectionPool"
import { ConnectionError } from "@connection-pool/core/PoolError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as net from "node:net"
import type { ConnectionOptions } from "node:tls"
import pg from "pg"
import { parse as parseUrl } from "pg-connection-string"

/** Where and how to connect; the password stays `Redacted` until the driver's call to `pg`. @internal */
export interface ConnectOptions {
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
  const parsed = options.url ? safeParse(Redacted.value(options.url)) : {}
  const host = options.host ?? parsed.host ?? "localhost"
  const user = options.username ?? parsed.user ?? process.env["PGUSER"] ?? "postgres"
  return {
    host,
    port: options.port ?? (parsed.port ? Number(parsed.port) : 5432),
    database: options.database ?? parsed.database ?? user,
    user
  }
}

const safeParse = (url: string): { host?: string; port?: string; database?: string; user?: string } => {
  try {
    const p = parseUrl(url)
    return {
      ...(p.host ? { host: p.host } : {}),
      ...(p.port ? { port: p.port } : {}),
      ...(p.database ? { database: p.database } : {}),
      ...(p.user ? { user: p.user } : {})
    }
  } catch {
    return {}
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

// Clients that saw their connection fail: never reused.
const broken = new WeakSet<pg.Client>()

/** Connection-class SQLSTATEs: the session is gone or going. @internal */
export const isConnectionFailure = (error: unknown): boolean => {
  const code = typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined
  return typeof code === "string" && (code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03")
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
    case "53300":
      why = "too many connections: the server's max_connections is reached"
      break
    case "57P03":
      why = "the server is starting up or shutting down"
      break
    default: {
      const message = e.message ?? String(error)
      if (/timeout expired|connection timeout/i.test(message)) {
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

/** Sends PostgreSQL's CancelRequest on a fresh socket: cancelling never needs a pooled connection. @internal */
export const cancel = (client: pg.Client): Effect.Effect<void> => {
  const { processID, secretKey } = client as unknown as { processID: number | null; secretKey: number | null }
  if (processID === null || secretKey === null) return Effect.void
  return Effect.async<void>((resume) => {
    const host = client.host
    const socket = host.startsWith("/")
      ? net.connect({ path: `${host}/.s.PGSQL.${client.port}` })
      : net.connect({ host, port: client.port })
    const done = () => resume(Effect.void)
    socket.once("connect", () => {
      const packet = Buffer.alloc(16)
      packet.writeInt32BE(16, 0)
      packet.writeInt32BE(80877102, 4)
      packet.writeInt32BE(processID, 8)
      packet.writeInt32BE(secretKey, 12)
      // like libpq, let the server close the socket once the cancel is handled: hanging up first crashes
      // PgBouncer 1.18 (pgbouncer/pgbouncer#801)
      socket.write(packet)
    })
    socket.once("end", () => socket.end())
    socket.once("close", done)
    socket.once("error", done)
    return Effect.sync(() => socket.destroy())
  }).pipe(Effect.timeoutOption(Duration.seconds(2)), Effect.asVoid)
}

const socketOf = (client: pg.Client): net.Socket =>
  (client as unknown as { connection: { stream: net.Socket } }).connection.stream

const busy = (client: pg.Client): boolean => {
  const c = client as unknown as { _activeQuery: unknown; _queryQueue: Array<unknown>; _queryable: boolean }
  return c._activeQuery != null || c._queryQueue.length > 0
}

/** A client that can serve the next borrower: connected, healthy, and with nothing in flight. @internal */
export const reusable = (client: pg.Client): boolean => {
  const c = client as unknown as { _queryable: boolean; _ending: boolean }
  return !broken.has(client) && c._queryable && !c._ending && !busy(client)
}

/** @internal */
export const markBroken = (client: pg.Client): void => {
  broken.add(client)
}

/** @internal */
export const make = (options: ConnectOptions): ConnectionPool.Driver<pg.Client> => {
  const config = clientConfig(options)
  const t = target(options)
  const secrets = [
    ...(options.password ? [Redacted.value(options.password)] : []),
    ...(options.url ? [safePassword(Redacted.value(options.url))] : [])
  ]
  return {
    connect: Effect.async<pg.Client, ConnectionError>((resume) => {
      const client = new pg.Client(config)
      client.on("error", () => markBroken(client))
      client.on("end", () => markBroken(client))
      client.connect((error: Error | undefined) => {
        if (error) {
          client.end().catch(() => {})
          resume(Effect.fail(new ConnectionError({ reason: describe(error, t, secrets), cause: error })))
        } else {
          resume(Effect.succeed(client))
        }
      })
      return Effect.sync(() => void client.end().catch(() => {}))
    }),
    close: (client) =>
      Effect.zipRight(
        busy(client) && !broken.has(client) ? cancel(client) : Effect.void,
        Effect.promise(() => client.end().catch(() => {})).pipe(
          Effect.timeoutOption(Duration.seconds(2)),
          Effect.tap((ended) =>
            ended._tag === "None"
              ? Effect.sync(() => socketOf(client).destroy())
              : Effect.void
          )
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

const safePassword = (url: string): string => {
  try {
    return parseUrl(url).password ?? ""
  } catch {
    return ""
  }
}
