/**
 * SQLite on `@connection-pool/core`: better-sqlite3 connections in two pools behind one `SqlClient` (from
 * @effect/sql). Statements that only read go to a pool of reader connections; everything else, and every
 * statement of a transaction, goes through a pool of exactly one writer, in FIFO order, so a program never sees
 * `SQLITE_BUSY` from its own connections. Every connection opens the file in WAL mode (readers never block the
 * writer, nor it them) with a `busy_timeout` for other processes.
 *
 * better-sqlite3 is synchronous. With `threads: "worker"` each connection lives on a worker thread of its own, so
 * N readers use N cores and a long query neither blocks the event loop nor resists interruption (interrupting it
 * terminates that worker; the pool opens another). With `threads: "main"` (the default: it is faster for the
 * small statements most programs run, see bench/README.md) statements run on the main thread, synchronously, and
 * one borrow of a reader serves every read of one scheduler turn (the readers' `acquired` counts those borrows).
 *
 * @example
 * ```ts
 * import { SqlitePool } from "@connection-pool/sqlite"
 * import { SqlClient } from "@effect/sql"
 * import { Effect } from "effect"
 *
 * const DbLive = SqlitePool.layer({ filename: "app.db", threads: "worker", maxSize: 4 })
 *
 * const program = Effect.gen(function*() {
 *   const sql = yield* SqlClient.SqlClient
 *   yield* sql`CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)`
 *   yield* sql.withTransaction(sql`INSERT INTO notes (body) VALUES (${"hello"})`)
 *   return yield* sql`SELECT count(*) AS n FROM notes`
 * }).pipe(Effect.provide(DbLive))
 * ```
 *
 * @since 0.1.0
 */
import * as ConnectionPool from "@connection-pool/core/ConnectionPool"
import type { ConnectionError, InvalidConfig, PoolError } from "@connection-pool/core/PoolError"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as os from "node:os"
import * as client from "./internal/client.js"
import * as connection from "./internal/connection.js"
import * as errors from "./internal/errors.js"

/**
 * One reader or the writer. Opaque: statements reach it through the `SqlClient`.
 *
 * @since 0.1.0
 * @category models
 */
export interface SqliteConnection {
  readonly id: number
  readonly filename: string
  readonly thread: "main" | "worker"
}

/**
 * The file, how each connection opens it, the readers' pool options (`maxSize` is the number of readers), and
 * @effect/sql-sqlite-node's client options.
 *
 * @since 0.1.0
 * @category models
 */
export interface SqlitePoolConfig extends ConnectionPool.PoolConfig, client.ClientOptions {
  /** The database file; created (with its directory's permission) when missing unless `fileMustExist`. */
  readonly filename: string
  readonly fileMustExist?: boolean | undefined
  /**
   * Where readers run: `"main"` (default; one borrow serves the reads of a scheduler turn) or `"worker"` (one
   * worker thread per connection, one borrow per statement).
   */
  readonly threads?: "main" | "worker" | undefined
  /** Where the writer runs. Default: `threads`. */
  readonly writerThread?: "main" | "worker" | undefined
  /** `PRAGMA journal_mode = WAL` on open. Default true; without it readers and the writer block each other. */
  readonly wal?: boolean | undefined
  /** How long a connection waits on a lock held by another process before `SQLITE_BUSY`. Default 5 seconds. */
  readonly busyTimeout?: Duration.DurationInput | undefined
  /** Pragmas run on every connection after it opens, for example `"synchronous = NORMAL"`. */
  readonly pragmas?: ReadonlyArray<string> | undefined
  /** Prepared statements kept per connection. Default 200. */
  readonly prepareCacheSize?: number | undefined
  /** Open the writer while the layer is built, so a bad path fails the layer. Default true. */
  readonly connectOnStart?: boolean | undefined
}

/**
 * The readers' pool.
 *
 * @since 0.1.0
 * @category tags
 */
export class Readers extends ConnectionPool.Tag("@connection-pool/sqlite/Readers")<Readers, SqliteConnection>() {}

/**
 * The writer's pool (`maxSize` 1).
 *
 * @since 0.1.0
 * @category tags
 */
export class Writer extends ConnectionPool.Tag("@connection-pool/sqlite/Writer")<Writer, SqliteConnection>() {}

/**
 * A statement's connection was lost: its worker thread exited (crashed, or was terminated) while it ran. The
 * statement fails with an `SqlError` whose `cause` is this; the pool replaces the connection.
 *
 * @since 0.1.0
 * @category errors
 */
export const WorkerCrashed = errors.WorkerCrashed

/**
 * @since 0.1.0
 * @category errors
 */
export type WorkerCrashed = errors.WorkerCrashed

type Conn = connection.Connection

const openOptions = (options: SqlitePoolConfig, readonly: boolean): connection.OpenOptions => ({
  filename: options.filename,
  readonly,
  fileMustExist: readonly || options.fileMustExist === true,
  wal: options.wal !== false,
  busyTimeout: Duration.toMillis(options.busyTimeout ?? Duration.seconds(5)),
  pragmas: options.pragmas ?? [],
  prepareCacheSize: options.prepareCacheSize ?? 200
})

/**
 * A driver for one kind of connection, for a `ConnectionPool` of your own: `readonly` connections (readers) need
 * the file to exist in WAL mode already. Connect failures are `ConnectionError`s that name the file and say what
 * is wrong: a path that cannot be opened, a file that is not a database, a directory where WAL cannot create its
 * files.
 *
 * @since 0.1.0
 * @category constructors
 */
export const driver = (
  options: SqlitePoolConfig & { readonly readonly?: boolean | undefined }
): ConnectionPool.Driver<SqliteConnection> => {
  const open = openOptions(options, options.readonly === true)
  const thread = options.readonly === true ? options.threads : options.writerThread ?? options.threads
  return {
    connect: thread === "worker" ? connection.connectWorker(open) : connection.connectMain(open),
    close: (conn) => (conn as Conn).close,
    reusable: (conn) => (conn as Conn).usable()
  }
}

/** Readers when `maxSize` is not given: one per core on workers; on the main thread one is as fast as many. */
const readersDefault = (options: SqlitePoolConfig) => options.threads === "worker" ? os.availableParallelism() : 1

/**
 * Builds both pools and the `SqlClient` they serve, in the current scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: SqlitePoolConfig
): Effect.Effect<
  {
    readonly readers: ConnectionPool.ConnectionPool<SqliteConnection>
    readonly writer: ConnectionPool.ConnectionPool<SqliteConnection>
    readonly client: SqlClient.SqlClient
  },
  InvalidConfig | ConnectionError | PoolError,
  Scope.Scope | Reactivity.Reactivity
> =>
  Effect.gen(function*() {
    const name = options.name ?? "sqlite"
    // validated by the readers' pool first, so that a bad option is reported against the options as given
    const readers = yield* ConnectionPool.make({
      maxSize: readersDefault(options),
      ...options,
      name,
      driver: driver({ ...options, readonly: true })
    })
    const writer = yield* ConnectionPool.make({
      ...options,
      name: `${name}-writer`,
      minSize: Math.min(1, options.minSize ?? 0),
      maxSize: 1,
      driver: driver({ ...options, readonly: false })
    })
    if (options.connectOnStart !== false) yield* writer.withConnection(() => Effect.void)
    const db = yield* Effect.acquireRelease(
      Effect.try({
        try: () => connection.openDatabase({ ...openOptions(options, true), wal: false, pragmas: [] }),
        catch: (e) => e as ConnectionError
      }),
      (db) => Effect.sync(() => db.close())
    )
    // the pools hold the internal connections the drivers made; their public type only hides them
    const internal = (pool: ConnectionPool.ConnectionPool<SqliteConnection>) =>
      pool as ConnectionPool.ConnectionPool<Conn>
    // a first reader now, so that the first statements find one idle: callers that queue behind a connect keep
    // queueing (each release hands over to the oldest waiter), where with an idle reader none has to
    if (options.connectOnStart !== false) yield* readers.withConnection(() => Effect.void)
    const sql = yield* client.make(internal(readers), internal(writer), client.classifier(db), {
      readers: options.threads ?? "main",
      writer: options.writerThread ?? options.threads ?? "main"
    }, options)
    return { readers, writer, client: sql }
  })

/**
 * `Readers`, `Writer` and `SqlClient`, from one file.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: SqlitePoolConfig
): Layer.Layer<Readers | Writer | SqlClient.SqlClient, InvalidConfig | ConnectionError | PoolError> =>
  Layer.scopedContext(
    Effect.map(make(options), ({ client, readers, writer }) =>
      Context.make(Readers, readers).pipe(
        Context.add(Writer, writer),
        Context.add(SqlClient.SqlClient, client)
      ))
  ).pipe(Layer.provide(Reactivity.layer))

/**
 * `layer` with its options read from `Config`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<SqlitePoolConfig>
): Layer.Layer<
  Readers | Writer | SqlClient.SqlClient,
  ConfigError.ConfigError | InvalidConfig | ConnectionError | PoolError
> => Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))
