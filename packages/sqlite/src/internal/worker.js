// A reader or writer connection on a thread of its own: one better-sqlite3 database per worker. Plain JavaScript,
// so that it runs without a TypeScript loader. Protocol (see connection.ts): workerData holds the open options; the
// worker answers "ready" or "failed" once, then one reply per request, in order.
import Database from "better-sqlite3"
import { parentPort, workerData } from "node:worker_threads"

const { open, prepareCacheSize } = workerData
const serialize = (error) => ({ name: error?.name, message: String(error?.message ?? error), code: error?.code })

/** Opens the database the same way connection.ts does on the main thread. */
const openDatabase = () => {
  let step = "open"
  let db
  try {
    const { readonly, fileMustExist, busyTimeout } = open
    db = new Database(open.filename, { readonly, fileMustExist, timeout: busyTimeout })
    step = "read"
    db.pragma("schema_version") // a file that is not a database fails here, not at the first query
    if (open.wal) {
      step = "wal"
      if (open.readonly) {
        if (db.pragma("journal_mode", { simple: true }) !== "wal") {
          throw Object.assign(new Error("not in WAL mode"), { code: "NOT_WAL" })
        }
      } else db.pragma("journal_mode = WAL")
    }
    step = "pragmas"
    for (const pragma of open.pragmas) db.pragma(pragma)
    return db
  } catch (error) {
    try { db?.close() } catch {}
    throw Object.assign(serialize(error), { step })
  }
}

let db
try {
  db = openDatabase()
  parentPort.postMessage({ ready: true })
} catch (error) {
  parentPort.postMessage({ ready: false, error })
}

const cache = new Map()
const prepare = (sql) => {
  let statement = cache.get(sql)
  if (statement !== undefined) return statement
  statement = db.prepare(sql)
  if (cache.size >= prepareCacheSize) cache.delete(cache.keys().next().value)
  cache.set(sql, statement)
  return statement
}

parentPort.on("message", (request) => {
  if (request.close) {
    try { db?.close() } catch {}
    return parentPort.close() // nothing else keeps the thread alive: it exits
  }
  try {
    const statement = request.unprepared ? db.prepare(request.sql) : prepare(request.sql)
    statement.safeIntegers(request.safeIntegers)
    let value
    if (!statement.reader) {
      const info = statement.run(...request.params)
      value = request.mode === "raw" ? info : []
    } else if (request.mode === "values") {
      statement.raw(true)
      try {
        value = statement.all(...request.params)
      } finally {
        statement.raw(false)
      }
    } else value = statement.all(...request.params)
    parentPort.postMessage({ ok: true, value })
  } catch (error) {
    parentPort.postMessage({ ok: false, error: serialize(error) })
  }
})
