import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import type * as Tracer from "effect/Tracer"
import type { PoolImpl } from "./pool.js"
import type { Entry } from "./state.js"
import { noTags } from "./stats.js"

// Leak detection (`leakDetectionThreshold`), HikariCP's for fibers. While it is on, every borrow from the pool is
// noted with the fiber that made it and the span it ran under (two field reads); a watcher fiber in the pool's
// scope, driven by `Clock`, wakes when the oldest borrow reaches the threshold and reports it once. A report that
// is later returned says so. Nothing is closed: a long borrow may be legitimate (a long transaction, a stream).
// While it is off, nothing here runs and no borrow is noted.

/** One borrow, watched. Also the token its releaser hands back, so that a later borrow of the entry is not touched. */
export class Borrow<A> {
  reported = false
  constructor(
    readonly entry: Entry<A>,
    readonly fiber: Fiber.RuntimeFiber<any, any>,
    readonly span: Tracer.AnySpan | undefined,
    readonly since: number
  ) {}
}

/** @internal */
export const enabled = <A>(pool: PoolImpl<A>): boolean => pool.options.leakDetectionThreshold !== Infinity

/**
 * Notes a borrow: when, and under which span of its fiber (the caller's; for a callback operation started by a
 * giver, still its caller's).
 */
export const track = <A>(pool: PoolImpl<A>, entry: Entry<A>, fiber: Fiber.RuntimeFiber<any, any>): Borrow<A> => {
  const borrow = new Borrow(entry, fiber, fiber.currentSpan, pool.now())
  pool.borrows.set(entry, borrow)
  return borrow
}

/**
 * The borrow ends. `then` runs after, preceded by the "unleaked" line when this borrow had been reported. A later
 * borrow of the same connection (noted before this runs, if the release handed it on) is left alone.
 */
export const returned = <A, X, E>(
  pool: PoolImpl<A>,
  borrow: Borrow<A>,
  then: Effect.Effect<X, E>
): Effect.Effect<X, E> => {
  if (pool.borrows.get(borrow.entry) === borrow) pool.borrows.delete(borrow.entry)
  if (!borrow.reported) return then
  pool.counters.leaked--
  const held = pool.now() - borrow.since
  const fiber = FiberId.threadName(borrow.fiber.id())
  const log = Effect.logInfo(
    `previously reported leaked connection of pool "${pool.name}" was returned by fiber ${fiber} after ` +
      `${Duration.format(Duration.millis(held))}`
  ).pipe(Effect.annotateLogs({ pool: pool.name, fiberId: fiber, heldMs: held }))
  return Effect.zipRight(log, then)
}

/**
 * Sleeps until the oldest unreported borrow reaches the threshold, reports every borrow that has, and again. A
 * borrow made while it sleeps cannot reach the threshold sooner than a full threshold from now.
 *
 * @internal
 */
export const watcher = <A>(pool: PoolImpl<A>): Effect.Effect<never> => {
  const pass = Effect.suspend(() => {
    const threshold = pool.options.leakDetectionThreshold
    const now = pool.now()
    let next = now + threshold
    const due: Array<Borrow<A>> = []
    for (const borrow of pool.borrows.values()) {
      if (borrow.reported) continue
      const at = borrow.since + threshold
      if (at <= now) {
        borrow.reported = true
        due.push(borrow)
      } else if (at < next) next = at
    }
    const sleep = Effect.sleep(Math.max(1, Math.ceil(next - now)))
    if (due.length === 0) return sleep
    return Effect.zipRight(Effect.forEach(due, (borrow) => report(pool, borrow, now), { discard: true }), sleep)
  })
  return Effect.forever(pass)
}

const report = <A>(pool: PoolImpl<A>, borrow: Borrow<A>, now: number): Effect.Effect<void> =>
  Effect.suspend(() => {
    pool.counters.leaksSuspected++
    pool.counters.leaked++
    pool.metrics.leaks.unsafeUpdate(1, noTags)
    const held = now - borrow.since
    const fiber = FiberId.threadName(borrow.fiber.id())
    const ended = borrow.fiber.unsafePoll() !== null
    const current = ended ? undefined : borrow.fiber.currentSpan
    const span = spanName(borrow.span)
    const where = span === undefined ? "" : ` in span "${span}"`
    const after = ended
      ? "; that fiber has ended, so the scope it borrowed into was never closed"
      : current !== borrow.span && spanName(current) !== undefined
      ? `; it now runs in span "${spanName(current)}"`
      : ""
    const message = `connection leak suspected: pool "${pool.name}" lent a connection to fiber ${fiber}${where} ` +
      `${Duration.format(Duration.millis(held))} ago and it has not come back (leakDetectionThreshold ` +
      `${Duration.format(Duration.millis(pool.options.leakDetectionThreshold))}${after}); it stays open`
    return Effect.flatMap(spanStack(borrow.span), (stack) =>
      Effect.logWarning(message).pipe(Effect.annotateLogs({
        pool: pool.name,
        fiberId: fiber,
        heldMs: held,
        ...(span === undefined ? {} : { span }),
        ...(spanName(current) === undefined ? {} : { currentSpan: spanName(current) }),
        ...(stack === undefined ? {} : { stack })
      })))
  })

const spanName = (span: Tracer.AnySpan | undefined): string | undefined => span?._tag === "Span" ? span.name : undefined

class BorrowedHere extends Error {}

/**
 * Effect's stack for a span: where it and its parents were defined (`Effect.withSpan` and `Effect.fn` capture
 * their call sites), as `Cause.pretty` prints it for a failure under that span. Built only for a report.
 */
const spanStack = (span: Tracer.AnySpan | undefined): Effect.Effect<string | undefined> => {
  if (span === undefined || span._tag !== "Span") return Effect.succeed(undefined)
  const marker = new BorrowedHere("borrowed")
  marker.stack = "borrowed" // the JavaScript stack here is the watcher's, not the borrower's
  return Effect.map(Effect.exit(Effect.withParentSpan(Effect.fail(marker), span)), (exit) => {
    if (Exit.isSuccess(exit)) return undefined
    const lines = Cause.pretty(exit.cause).split("\n").slice(1).map((line) => line.trim())
    return lines.length === 0 ? undefined : lines.join("\n")
  })
}
