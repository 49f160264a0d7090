/**
 * Memory: heap bytes per queued waiter (10,000 fibers waiting on a pool of 10) and per idle connection (a pool of
 * 10,000 connections, all idle), for `ConnectionPool` and effect's `Pool.make` in the same run, beside 10,000 fibers
 * that wait on a `Deferred` (what a waiting fiber costs before any pool). Part of `core`; alone: `npm run bench -- memory`.
 */
import { Deferred, Effect, Fiber, Pool, type Scope } from "effect"
import { ConnectionPool } from "../packages/core/src/index.js"
import { commitLine, gc, machineLine, scoped } from "./common.js"

const MAX_SIZE = 10
const MEMORY_WAITERS = 10_000
const MEMORY_IDLE = 10_000

/** A connection and the count of those open, as the core suite's; one counter shared by all of a pool's. */
class Tracker {
  open = 0
  readonly connect = (): Conn => {
    this.open++
    return new Conn(this)
  }
}

class Conn {
  busy = false
  constructor(readonly tracker: Tracker) {}
}


/** Heap in use after a full GC. */
export const heap = (): number => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

interface MemorySubject {
  readonly name: string
  /** A pool of `size` (or none, for the fibers-alone row), and how to borrow from it around `use`. */
  readonly make: (size: number) => Effect.Effect<{
    readonly borrow: (use: Effect.Effect<void>) => Effect.Effect<void, unknown>
    /** Callers queued (-1 when the pool does not say). */
    readonly waiting: Effect.Effect<number>
    /** Connections opened so far. */
    readonly opened: () => number
  }, never, Scope.Scope>
}

const memorySubjects = (): ReadonlyArray<MemorySubject> => [
  {
    name: "ConnectionPool",
    make: (size) => {
      const tracker = new Tracker()
      const driver = { connect: Effect.sync(tracker.connect), close: () => Effect.void }
      return Effect.map(Effect.orDie(ConnectionPool.make({ driver, maxSize: size, minSize: size })), (pool) => ({
        borrow: (use) => pool.withConnection(() => use),
        waiting: Effect.map(pool.stats, (s) => s.waiting),
        opened: () => tracker.open
      }))
    }
  },
  {
    name: "effect Pool.make",
    make: (size) => {
      const tracker = new Tracker()
      return Effect.map(Pool.make({ acquire: Effect.sync(tracker.connect), size }), (pool) => ({
        borrow: (use) => Effect.scoped(Effect.zipRight(Pool.get(pool), use)),
        waiting: Effect.succeed(-1),
        opened: () => tracker.open
      }))
    }
  },
  {
    name: "fibers alone (each waiting on a Deferred)",
    make: () =>
      Effect.map(Deferred.make<void>(), (d) => ({
        borrow: () => Deferred.await(d),
        waiting: Effect.succeed(-1),
        opened: () => 0
      }))
  }
]

const ticks = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r))
}

/** Yields to the event loop until `done` (at most ~10,000 turns). */
const until = async (done: () => Promise<boolean> | boolean) => {
  for (let i = 0; i < 10_000 && !(await done()); i++) await ticks(1)
}

/** Heap bytes per queued waiter (10,000 fibers on a pool of 10) and per idle connection (a pool of 10,000). */
export const memoryTable = async (): Promise<string> => {
  const lines = [
    `### Memory (heap after a full GC; ${MEMORY_WAITERS.toLocaleString("en-US")} waiters on a pool of ${MAX_SIZE}; ` +
    `a pool of ${MEMORY_IDLE.toLocaleString("en-US")} idle connections)`,
    "",
    "| pool | bytes per queued waiter (its fiber included) | bytes per idle connection (the connection object excluded) |",
    "|---|--:|--:|"
  ]
  const connBytes = (() => {
    const before = heap()
    const tracker = new Tracker()
    const keep = Array.from({ length: MEMORY_IDLE }, () => tracker.connect())
    return (heap() - before) / keep.length
  })()
  for (const subject of memorySubjects()) {
    // waiters: every connection held, then 10,000 more borrowers queue behind them
    const { close, value } = await scoped(Effect.gen(function*() {
      const pool = yield* subject.make(MAX_SIZE)
      const gate = yield* Deferred.make<void>()
      for (let i = 0; i < MAX_SIZE; i++) yield* Effect.forkScoped(pool.borrow(Deferred.await(gate)))
      return { pool, gate }
    }))
    await until(() => value.pool.opened() >= MAX_SIZE || subject.name.startsWith("fibers"))
    await ticks(20)
    const before = heap()
    const fibers = Effect.runSync(Effect.forEach(
      Array.from({ length: MEMORY_WAITERS }),
      () => Effect.forkDaemon(value.pool.borrow(Effect.void))
    ))
    await until(async () => {
      const n = await Effect.runPromise(value.pool.waiting)
      return n < 0 || n >= MEMORY_WAITERS
    })
    await ticks(20)
    const perWaiter = (heap() - before) / MEMORY_WAITERS
    await Effect.runPromise(Fiber.interruptAll(fibers))
    await Effect.runPromise(Deferred.succeed(value.gate, undefined))
    await close()
    // idle: a pool of 10,000 connections, every one opened and idle
    let perIdle = NaN
    if (!subject.name.startsWith("fibers")) {
      const before = heap()
      const idle = await scoped(subject.make(MEMORY_IDLE))
      await until(() => idle.value.opened() >= MEMORY_IDLE)
      await ticks(20)
      perIdle = (heap() - before) / MEMORY_IDLE - connBytes
      await idle.close()
    }
    lines.push(`| ${subject.name} | ${perWaiter.toFixed(0)} | ${Number.isNaN(perIdle) ? "—" : perIdle.toFixed(0)} |`)
  }
  return lines.join("\n")
}

export const main = async (): Promise<void> => {
  console.log("## memory: heap per queued waiter and per idle connection")
  console.log("")
  console.log(machineLine())
  console.log(commitLine())
  console.log("")
  console.log(await memoryTable())
  console.log("")
}
