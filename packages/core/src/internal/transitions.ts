import { ConnectionError, type PoolError } from "../PoolError.js"
import { probeDelay, type Resolved } from "./options.js"
import type { Overloaded } from "./overload.js"
import * as Stack from "./stack.js"
import {
  allOf,
  Breaker,
  emptyFifo,
  type Entry,
  type Fifo,
  limitOf,
  patched,
  push,
  type State,
  withIdle,
  withQueue
} from "./state.js"
import { CANCELLED, TAKEN, WAITING, type Waiter } from "./waiter.js"

// The pool's state transitions: functions of a `State` to a result and the next `State`, run by `stats.modify`
// inside the pool's one `TRef.modify`.
//
// They are pure but for one thing: a waiter's plain fields (its `status`, and for a new waiter what its caller is
// to do next) are written here, inside the transaction, and nowhere else under STM (but for the pool's `traced`
// scratch, see `handoff.commitTraced`). That is safe because these transactions never `retry` and never fail, and
// read and write only the one `TRef`: each runs exactly once, synchronously, and commits. A transaction that could
// ever be retried must not write anything but TRefs, or a second run would see (and repeat) the first one's
// writes. Keep it that way: no `STM.retry`, `STM.check` or `STM.fail` around a transition that calls one of these.

/** An idle connection (the hot path, returned as is), or why there is none yet. @internal */
export type Take<A> =
  | Entry<A>
  | Waiter<A>
  | { readonly _tag: "Closed" }
  | { readonly _tag: "Empty" }
  | { readonly _tag: "Breaker" }
  | Overloaded

/**
 * Where a connection went, back from a borrower or newly opened: to this waiter (as is), idle, or to close.
 *
 * @internal
 */
export type Placed<A> = Waiter<A> | { readonly _tag: "Idle" } | Closing<A>

/** A connection to close, and what closing it leaves to do. @internal */
export interface Closing<A> {
  readonly _tag: "Destroy"
  readonly spawn: number
  /** Waiters left with nothing to wait for: the breaker is open and this was the last connection. */
  readonly stranded: ReadonlyArray<Waiter<A>>
  /** The `tryGet` this connection was opened for, when the pool shut or shrank while it opened. */
  readonly orphan: Waiter<A> | undefined
}

/** Who opens a connection: a caller's connect, the warm-up and refill, or the breaker's probe. @internal */
export type Kind = "waiter" | "background" | "probe"

/** A failed connect's outcome. @internal */
export interface Failed<A> {
  readonly recipient: Waiter<A> | undefined
  /** Failed with the breaker's error: it opened with nothing open to wait for. */
  readonly failed: ReadonlyArray<Waiter<A>>
  readonly spawn: number
  /** The server is at capacity: the ceiling dropped and the grower is to look for room later. */
  readonly full: boolean
  /** This failure opened the breaker: the prober is to start. */
  readonly opened: boolean
}

/** @internal */
export const noWaiters: Array<never> = []
/** @internal */
export const closedTake = { _tag: "Closed" } as const
/** @internal */
export const emptyTake = { _tag: "Empty" } as const
/** @internal */
export const breakerTake = { _tag: "Breaker" } as const
const idlePlaced = { _tag: "Idle" } as const

// ----------------------------------------------------------------------------------------------------- connects

/**
 * How many connects to start so that every waiter has one coming, within `maxSize` and the server's ceiling.
 * None while the breaker is open: only its probe connects.
 *
 * @internal
 */
export const spawnCount = <A>(s: State<A>, waiting: number): number =>
  s.closed || s.breaker !== undefined ? 0 : Math.max(0, Math.min(waiting - s.pending, limitOf(s) - s.total - s.pending))

/** Reserves in `pending` the connects that `spawnCount` asks for. @internal */
export const withSpawn = <A>(s: State<A>): readonly [number, State<A>] => {
  const spawn = spawnCount(s, s.waiting)
  return [spawn, spawn === 0 ? s : patched(s, { pending: s.pending + spawn })]
}

// ----------------------------------------------------------------------------------------------------- waiters

/** The oldest live waiter (left in the queue) and the queue without the dead ones before it. @internal */
export const peekLive = <A>(q: Fifo<Waiter<A>>): readonly [Waiter<A> | undefined, Fifo<Waiter<A>>] => {
  let front = q.front
  let back = q.back
  for (;;) {
    if (!(front instanceof Stack.Cell)) {
      if (!(back instanceof Stack.Cell)) return [undefined, emptyFifo]
      front = Stack.reverse(back)
      back = Stack.nil
    }
    const cell = front as Stack.Cell<Waiter<A>>
    if (cell.head.status === WAITING) return [cell.head, front === q.front ? q : { front, back }]
    front = cell.tail
  }
}

/** The oldest live waiter, with the dead ones before it dropped from the queue. @internal */
export const liveHead = <A>(s: State<A>): readonly [Waiter<A> | undefined, State<A>] => {
  const [head, waiters] = peekLive(s.waiters)
  return [head, waiters === s.waiters ? s : patched(s, { waiters })]
}

/** Queues a new waiter, reserving the connects it needs, and notes on it what its caller is to do next. @internal */
export const enqueue = <A>(s: State<A>, waiter: Waiter<A>, traced: boolean): readonly [Waiter<A>, State<A>] => {
  const waiting = s.waiting + 1
  const spawn = spawnCount(s, waiting)
  waiter.spawn = spawn
  waiter.spawned = spawn > 0
  waiter.wake = s.waiting === 0
  waiter.traced = traced
  return [waiter, withQueue(s, push(s.waiters, waiter), waiting, s.pending + spawn)]
}

/**
 * Queues a waiter at the head of the queue: a caller that was about to get a connection, older than every waiter
 * behind it. It keeps its deadline (and times itself: the sweeper sleeps on the old head's).
 *
 * @internal
 */
export const queueFirst = <A>(s: State<A>, waiter: Waiter<A>, traced: boolean): readonly [Waiter<A>, State<A>] => {
  const waiting = s.waiting + 1
  const spawn = spawnCount(s, waiting)
  waiter.spawn = spawn
  waiter.spawned = spawn > 0
  waiter.wake = s.waiting === 0
  waiter.traced = traced
  const waiters = { front: Stack.push(s.waiters.front, waiter), back: s.waiters.back }
  return [waiter, patched(s, { waiters, waiting, pending: s.pending + spawn })]
}

/**
 * A connection handed to a caller failed its check: it leaves the count, and the caller, as `waiter`, goes back
 * to the head of the queue (it had waited its turn), with connects started for it as for a newcomer.
 *
 * @internal
 */
export const requeueFirst = <A>(s: State<A>, waiter: Waiter<A>): readonly [Waiter<A>, State<A>] =>
  queueFirst(patched(s, { total: s.total - 1 }), waiter, false)

/** `tryGet`'s waiter, never queued: reserves the one connect it opens for itself. @internal */
export const reserveFor = <A>(s: State<A>, waiter: Waiter<A>, traced: boolean): readonly [Waiter<A>, State<A>] => {
  waiter.spawn = 1
  waiter.traced = traced
  return [waiter, patched(s, { pending: s.pending + 1 })]
}

/**
 * Takes `waiter` if it is still waiting (it will be completed): true, or false if it was cancelled or taken.
 *
 * @internal
 */
export const claim = <A>(waiter: Waiter<A>): boolean => {
  if (waiter.status !== WAITING) return false
  waiter.status = TAKEN
  return true
}

/** Takes the oldest live waiter, marking it TAKEN: it will be completed. Only called when `waiting > 0`. @internal */
export const takeHead = <A>(s: State<A>): readonly [Waiter<A>, State<A>] => {
  const [waiter, q] = peekLive(s.waiters)
  waiter!.status = TAKEN
  const waiters = { front: (q.front as Stack.Cell<Waiter<A>>).tail, back: q.back }
  return [waiter!, withQueue(s, waiters, s.waiting - 1, s.pending)]
}

/** Every live waiter, taken (marked TAKEN) out of the queue, oldest first. @internal */
export const takeAll = <A>(s: State<A>): readonly [Array<Waiter<A>>, State<A>] => {
  const waiters = allOf(s.waiters).filter((w) => w.status === WAITING)
  for (const w of waiters) w.status = TAKEN
  return [waiters, patched(s, { waiters: emptyFifo, waiting: 0 })]
}

/** Takes every waiter at the head of the queue whose deadline has passed. @internal */
export const takeExpired = <A>(s0: State<A>, now: number): readonly [Array<Waiter<A>>, State<A>] => {
  const expired: Array<Waiter<A>> = []
  let s = s0
  for (;;) {
    const [head] = peekLive(s.waiters)
    if (head === undefined || head.deadline > now) break
    const [waiter, next] = takeHead(s)
    expired.push(waiter)
    s = next
  }
  return [expired, s]
}

/**
 * Cancels a waiter that is still waiting, taking it out of the count (it stays in the queue until it reaches the
 * front): true, or false when a transaction took it first.
 *
 * @internal
 */
export const dequeue = <A>(s: State<A>, waiter: Waiter<A>): readonly [boolean, State<A>] => {
  if (waiter.status !== WAITING) return [false, s]
  waiter.status = CANCELLED
  return [true, waiter.queued ? patched(s, { waiting: s.waiting - 1 }) : s]
}

// ----------------------------------------------------------------------------------------------------- connections

/** Takes the next idle connection. Only called when `idleCount > 0`. @internal */
export const takeIdle = <A>(s: State<A>): readonly [Take<A>, State<A>] => {
  if (s.idle instanceof Stack.Cell) return [s.idle.head, withIdle(s, s.idle.tail, s.idleBack, s.idleCount - 1)]
  const idle = Stack.reverse(s.idleBack) as Stack.Cell<Entry<A>>
  return [idle.head, withIdle(s, idle.tail, Stack.nil, s.idleCount - 1)]
}

/**
 * A connection already counted in `total` goes to `target` or the oldest waiter, else idle; it is to be closed
 * instead when the pool is shut, the connection invalid or expired, or the pool shrank.
 *
 * @internal
 */
export const place = <A>(
  s: State<A>,
  entry: Entry<A>,
  expired: boolean,
  target: Waiter<A> | undefined,
  reuse: Resolved["reuse"]
): readonly [Placed<A>, State<A>] => {
  if (s.closed || entry.invalid || expired || s.total > s.maxSize) {
    let rest = patched(s, { total: s.total - 1 })
    let stranded: Array<Waiter<A>> = noWaiters
    if (rest.breaker !== undefined && rest.total === 0 && rest.waiting > 0) [stranded, rest] = takeAll(rest)
    const [spawn, next] = withSpawn(rest)
    const orphan = target !== undefined && claim(target) ? target : undefined
    return [{ _tag: "Destroy", spawn, stranded, orphan }, next]
  }
  if (target !== undefined && claim(target)) return [target, s]
  if (s.waiting > 0) return takeHead(s)
  return [
    idlePlaced,
    reuse === "lifo"
      ? withIdle(s, Stack.push(s.idle, entry), s.idleBack, s.idleCount + 1)
      : withIdle(s, s.idle, Stack.push(s.idleBack, entry), s.idleCount + 1)
  ]
}

/**
 * A connect succeeded: its slot moves from `pending` to `total`, the failure streak clears, the breaker closes.
 *
 * @internal
 */
export const connected = <A>(s: State<A>): State<A> =>
  patched(s, { total: s.total + 1, pending: s.pending - 1, failures: 0, breaker: undefined })

/**
 * A connect failed: its slot is given back and the error goes to `target` (tryGet) or the oldest waiter, except
 * - a server at capacity (`atCapacity`) while connections of ours are open: the ceiling drops to what is open and
 *   the waiter stays queued for a release;
 * - the failure that opens the breaker also takes every waiter when nothing is open to wait for.
 *
 * @internal
 */
export const connectFailure = <A>(
  s0: State<A>,
  error: PoolError,
  /** Not counted toward the breaker: interrupted, or begun before the latest connect that succeeded. */
  uncounted: boolean,
  target: Waiter<A> | undefined,
  kind: Kind,
  now: number,
  random: number,
  options: Resolved
): readonly [Failed<A>, State<A>] => {
  let s: State<A> = patched(s0, { pending: s0.pending - 1 })
  const full = error._tag === "ConnectionError" && error.atCapacity === true && s.total > 0
  if (full) s = patched(s, { ceiling: Math.max(1, s.total + s.pending) })
  else if (!uncounted) s = failedOnce(s, error, now, random, kind, options)
  let recipient: Waiter<A> | undefined = undefined
  if (target !== undefined) {
    if (claim(target)) recipient = target
  } else if (kind === "waiter" && s.waiting > 0 && !full) {
    ;[recipient, s] = takeHead(s)
  }
  const opened = s.breaker !== undefined && s0.breaker === undefined
  let failed: Array<Waiter<A>> = noWaiters
  if (opened && s.total === 0) [failed, s] = takeAll(s)
  const [spawn, next] = withSpawn(s)
  return [{ recipient, failed, spawn, full, opened }, next]
}

/** Counts one connect failure: the streak grows, and the breaker opens at the threshold or reschedules a probe. */
const failedOnce = <A>(
  s: State<A>,
  error: PoolError,
  now: number,
  random: number,
  kind: Kind,
  options: Resolved
): State<A> => {
  const failures = s.failures + 1
  const last = error._tag === "ConnectionError" ? error : s.breaker?.last ??
    new ConnectionError({ reason: error.message, cause: error, pool: options.name })
  if (s.breaker !== undefined) {
    if (kind !== "probe") return patched(s, { failures })
    const probes = s.breaker.probes + 1
    const next = now + probeDelay(options, probes + 1, random)
    return patched(s, { failures, breaker: new Breaker(s.breaker.openedAt, probes, next, last) })
  }
  if (failures < options.breakerThreshold) return patched(s, { failures })
  return patched(s, { failures, breaker: new Breaker(now, 0, now + probeDelay(options, 1, random), last) })
}
