import { Deferred, Duration, Effect, Fiber, Ref, TestClock } from "effect"
import { ConnectionPool, PoolError } from "../src/index.js"

/** An in-memory connection that remembers how often it was closed. */
export interface Conn {
  readonly id: number
  closes: number
  broken: boolean
}

export interface TestDriver {
  readonly driver: ConnectionPool.Driver<Conn>
  readonly opened: Array<Conn>
  /** Connections opened and not closed. */
  readonly open: () => Array<Conn>
  readonly attempts: () => number
  readonly validations: () => number
  /** While down, every connect fails with `ConnectionError`. */
  readonly setDown: (down: boolean) => void
}

export const makeDriver = (options: {
  /** The first `failures` connects fail. */
  readonly failures?: number
  readonly down?: boolean
  /** Each connect takes this long (on the test clock); `"never"` hangs. */
  readonly connectDelay?: Duration.DurationInput | "never"
  readonly validate?: boolean
  /** Each validation takes this long (on the test clock); `"never"` hangs. */
  readonly validateDelay?: Duration.DurationInput | "never"
} = {}): TestDriver => {
  const opened: Array<Conn> = []
  let attempts = 0
  let validations = 0
  let failures = options.failures ?? 0
  let down = options.down ?? false
  const connect = Effect.suspend(() => {
    attempts++
    if (down || failures > 0) {
      failures--
      return Effect.fail(
        new PoolError.ConnectionError({ reason: "connect to test:1 refused", cause: new Error("ECONNREFUSED") })
      )
    }
    const conn: Conn = { id: opened.length + 1, closes: 0, broken: false }
    opened.push(conn)
    return Effect.succeed(conn)
  })
  const delay = options.connectDelay
  return {
    driver: {
      connect: delay === undefined ? connect : delay === "never" ? Effect.never : Effect.delay(connect, delay),
      close: (conn) => Effect.sync(() => void conn.closes++),
      validate: options.validate === false ? undefined : (conn) => {
        const check = Effect.sync(() => {
          validations++
          return !conn.broken
        })
        const d = options.validateDelay
        return d === undefined ? check : d === "never" ? Effect.zipRight(check, Effect.never) : Effect.delay(check, d)
      }
    },
    opened,
    open: () => opened.filter((c) => c.closes === 0),
    attempts: () => attempts,
    validations: () => validations,
    setDown: (d) => {
      down = d
    }
  }
}

/** Lets forked fibers and the pool's background fibers run until they block. */
export const settle = Effect.repeatN(Effect.yieldNow(), 50)

/** Waits until `until` holds, moving nothing but fibers (the clock stays put). */
export const eventually = <A>(get: Effect.Effect<A>, until: (a: A) => boolean): Effect.Effect<A> =>
  Effect.gen(function*() {
    for (let i = 0; i < 10_000; i++) {
      const a = yield* get
      if (until(a)) return a
      yield* Effect.yieldNow()
    }
    return yield* Effect.dieMessage("condition never held")
  })

/** A borrower that holds its connection until told to let go. */
export const hold = <A>(pool: ConnectionPool.ConnectionPool<A>) =>
  Effect.gen(function*() {
    const got = yield* Deferred.make<A, PoolError.PoolError>()
    const release = yield* Deferred.make<void>()
    const fiber = yield* pool.get.pipe(
      Effect.tap((conn) => Deferred.succeed(got, conn)),
      Effect.tapError((e) => Deferred.fail(got, e)),
      Effect.zipLeft(Deferred.await(release)),
      Effect.scoped,
      Effect.fork
    )
    return { got, release: Deferred.succeed(release, undefined), fiber }
  })

export const order = () => Ref.make<Array<number>>([])

export const adjust = (d: Duration.DurationInput) => Effect.zipRight(TestClock.adjust(d), settle)

export const join = <A, E>(fiber: Fiber.Fiber<A, E>) => Fiber.join(fiber)
