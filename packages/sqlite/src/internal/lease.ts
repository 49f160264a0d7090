import type * as ConnectionPool from "@connection-pool/core/ConnectionPool"
import type { PoolError } from "@connection-pool/core/PoolError"
import type { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"
import type { Connection } from "./connection.js"

// On the main thread a read runs synchronously: it holds its connection across no scheduling point, so one borrow
// can serve every read that runs while the fibers scheduled with it have their turn. A lease is that borrow. A
// fiber of the client's own, the lessor, takes it with `withConnection`, lends the reader, yields to effect's
// scheduler (every fiber scheduled before it runs first), and when it runs again stops lending and gives the
// reader back. The pool sees one borrow per lease: its limits, FIFO handoff to other borrowers, validation,
// lifetime and stats all apply, `acquired` counting leases rather than reads, and a borrower waiting there waits
// for the end of a scheduler turn rather than of one statement. (That is why the writer is not lent this way: a
// transaction waiting for it would wait a whole turn of writes.)
//
// A read that finds no lease waits for one, on the lessor rather than in the pool's queue, so nobody queues for a
// reader that is lent already. The lessor takes the next lease right after giving one back if the last one was
// used (under load the reader goes back to the pool, to any waiter there first, once per scheduler turn), else when
// a read asks.

type Pool = ConnectionPool.ConnectionPool<Connection>

type Resume = (effect: Effect.Effect<void, PoolError>) => void

/** Lends the main-thread connections of one pool to the statements of one scheduler turn. @internal */
export class Lessor {
  /** The connection lent now. */
  private lent: Connection | undefined = undefined
  /** A statement ran on the current lease. */
  private used = false
  /** The lessor's fiber has ended (its scope closed): statements borrow for themselves. */
  private stopped = false
  private readonly waiters = new Set<Resume>()
  /** Wakes the lessor when it waits for a statement to ask. */
  private wake: (() => void) | undefined = undefined

  constructor(
    private readonly pool: Pool,
    private readonly toSqlError: (e: SqlError | PoolError) => SqlError
  ) {}

  /** Runs `f` (synchronous) on the lent connection, once there is a lease. */
  use<X>(f: (conn: Connection) => Exit.Exit<X, SqlError>): Effect.Effect<X, SqlError> {
    const conn = this.lent
    if (conn !== undefined) {
      this.used = true
      return f(conn)
    }
    if (this.stopped) {
      return Effect.mapError(this.pool.withConnection(f), this.toSqlError)
    }
    return Effect.flatMap(Effect.mapError(this.awaitLease, this.toSqlError), () => this.use(f))
  }

  private readonly awaitLease: Effect.Effect<void, PoolError> = Effect.async<void, PoolError>((resume) => {
    this.waiters.add(resume)
    const wake = this.wake
    this.wake = undefined
    if (wake !== undefined) wake()
    return Effect.sync(() => {
      this.waiters.delete(resume)
    })
  })

  private wakeAll(exit: Exit.Exit<void, PoolError>): void {
    if (this.waiters.size === 0) return
    const waiters = Array.from(this.waiters)
    this.waiters.clear()
    for (const resume of waiters) resume(exit)
  }

  /**
   * One lease: lent once the pool hands the reader over, until the lessor, having yielded to the fibers scheduled
   * meanwhile (those it woke among them), runs again; cleared before the reader goes back.
   */
  private readonly lease: Effect.Effect<void, PoolError> = Effect.suspend(() =>
    this.pool.withConnection((conn) => {
      this.lent = conn
      this.used = false
      this.wakeAll(Exit.void)
      return Effect.zipRight(
        Effect.yieldNow(),
        Effect.sync(() => {
          this.lent = undefined
        })
      )
    })
  )

  private readonly demand: Effect.Effect<void> = Effect.async<void>((resume) => {
    if (this.used || this.waiters.size > 0) return resume(Effect.void)
    this.wake = () => resume(Effect.void)
    return Effect.sync(() => {
      this.wake = undefined
    })
  })

  /** The lessor's loop, forever. */
  readonly run: Effect.Effect<never> = Effect.forever(Effect.zipRight(
    this.demand,
    Effect.matchCause(this.lease, {
      onFailure: (cause) => {
        this.lent = undefined
        this.used = false
        // the statements waiting get the pool's error (a timeout, a connect that failed, the pool closed)
        if (!Cause.isInterruptedOnly(cause)) this.wakeAll(Exit.failCause(cause as Cause.Cause<PoolError>))
      },
      onSuccess: () => {
        this.lent = undefined
      }
    })
  ))

  /** The lessor stopped: statements waiting, and those after, borrow for themselves. */
  stop(): void {
    this.stopped = true
    this.lent = undefined
    this.wakeAll(Exit.void)
  }
}

/** A lessor for `pool`, its fiber in the current scope. @internal */
export const make = (
  pool: Pool,
  toSqlError: (e: SqlError | PoolError) => SqlError
): Effect.Effect<Lessor, never, Scope.Scope> =>
  Effect.gen(function*() {
    const lessor = new Lessor(pool, toSqlError)
    yield* Effect.forkScoped(Effect.ensuring(lessor.run, Effect.sync(() => lessor.stop())))
    return lessor
  })
