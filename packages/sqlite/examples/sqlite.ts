import { SqlitePool } from "@connection-pool/sqlite"
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

// readers on 2 worker threads (one connection each), writes through one writer; WAL and busy_timeout on each
export const DbLive = (filename: string) =>
  SqlitePool.layer({ filename, threads: "worker", maxSize: 2, busyTimeout: "2 seconds" })

export const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)`
  yield* sql.withTransaction(sql`INSERT INTO notes (body) VALUES (${"written by the writer"})`)
  const notes = yield* sql<{ id: number; body: string }>`SELECT id, body FROM notes` // read by a reader
  const readers = yield* SqlitePool.Readers.stats
  return { notes, readers: readers.total }
})
