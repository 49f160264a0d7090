import type { ConnectionError } from "../PoolError.js"
import * as Stack from "./stack.js"
import type { Waiter } from "./waiter.js"

// Everything the pool decides on, the waiters' queue included, lives in one `TRef<State>`, so that an acquire and a
// release are each a single `TRef.modify`. (A `TQueue` of waiters beside it cost two to five more STM steps per
// handoff, and effect 3's TQueue mutates its array in place anyway.) TQueues serve as wake-up signals for the
// background fibers, which must not re-run on every state change as an `STM.retry` on the state would.
//
// The state is immutable; the only plain fields written inside its transactions are a waiter's, and only by the
// transitions in `transitions.ts`, which says why that is safe.

/** @internal */
export class Entry<A> {
  idleSince: number
  checkedAt: number
  borrowedAt = 0
  uses = 0
  invalid = false
  closed = false
  /** Written outside transactions only by `reconfigure`, when a shorter `maxLifetime` pulls it in. */
  constructor(readonly conn: A, readonly createdAt: number, public expiresAt: number) {
    this.idleSince = createdAt
    this.checkedAt = createdAt
  }
}

/**
 * Everything the pool decides on. A class, not an object literal: a transaction builds the next state with
 * `patched`, and copying a literal with `{ ...s, field }` costs V8 some 20 to 40 times more than this constructor.
 *
 * @internal
 */
export class State<A> {
  constructor(
    readonly closed: boolean,
    /** Idle connections, next to lend first: pushed here under `reuse: "lifo"`, refilled from `idleBack`. */
    readonly idle: Stack.Stack<Entry<A>>,
    /** Under `reuse: "fifo"`: returned connections, most recent first, reversed into `idle` when it runs dry. */
    readonly idleBack: Stack.Stack<Entry<A>>,
    readonly idleCount: number,
    /** Open connections, idle or in use. */
    readonly total: number,
    /** Connects in flight. */
    readonly pending: number,
    /** Waiters in arrival order; cancelled ones stay until they reach the front. */
    readonly waiters: Fifo<Waiter<A>>,
    /** Live waiters in the queue. */
    readonly waiting: number,
    readonly minSize: number,
    readonly maxSize: number,
    /** At most this many open: below `maxSize` while the server says it has no room (`atCapacity`). */
    readonly ceiling: number,
    /** Connect failures since the last success; the breaker opens at `breakerThreshold`. */
    readonly failures: number,
    /** The open circuit breaker, or undefined while it is closed. */
    readonly breaker: Breaker | undefined
  ) {}
}

/** An open circuit breaker. Immutable: a transaction that changes it builds a new one. @internal */
export class Breaker {
  constructor(
    readonly openedAt: number,
    /** Probes tried since it opened. */
    readonly probes: number,
    readonly nextProbeAt: number,
    readonly last: ConnectionError
  ) {}
}

/** A new pool's state: open, empty, no ceiling below `maxSize`, breaker closed. @internal */
export const initial = <A>(minSize: number, maxSize: number): State<A> =>
  new State<A>(false, Stack.nil, Stack.nil, 0, 0, 0, emptyFifo, 0, minSize, maxSize, Infinity, 0, undefined)

/** `s` with the fields of `patch` changed. @internal */
export const patched = <A>(s: State<A>, patch: Partial<State<A>>): State<A> =>
  new State(
    patch.closed ?? s.closed,
    patch.idle ?? s.idle,
    patch.idleBack ?? s.idleBack,
    patch.idleCount ?? s.idleCount,
    patch.total ?? s.total,
    patch.pending ?? s.pending,
    patch.waiters ?? s.waiters,
    patch.waiting ?? s.waiting,
    patch.minSize ?? s.minSize,
    patch.maxSize ?? s.maxSize,
    patch.ceiling ?? s.ceiling,
    patch.failures ?? s.failures,
    "breaker" in patch ? patch.breaker : s.breaker
  )

/**
 * `s` with a new queue: what the acquire and release transitions change on a contended pool (`patched` with a
 * literal patch costs a patch object and a test per field, twice per borrow). @internal
 */
export const withQueue = <A>(s: State<A>, waiters: Fifo<Waiter<A>>, waiting: number, pending: number): State<A> =>
  new State(
    s.closed,
    s.idle,
    s.idleBack,
    s.idleCount,
    s.total,
    pending,
    waiters,
    waiting,
    s.minSize,
    s.maxSize,
    s.ceiling,
    s.failures,
    s.breaker
  )

/** `s` with new idle connections: what the acquire and release transitions change on an uncontended pool. @internal */
export const withIdle = <A>(
  s: State<A>,
  idle: Stack.Stack<Entry<A>>,
  idleBack: Stack.Stack<Entry<A>>,
  idleCount: number
): State<A> =>
  new State(
    s.closed,
    idle,
    idleBack,
    idleCount,
    s.total,
    s.pending,
    s.waiters,
    s.waiting,
    s.minSize,
    s.maxSize,
    s.ceiling,
    s.failures,
    s.breaker
  )

/** How many connections the pool may have open or opening now. @internal */
export const limitOf = <A>(s: State<A>): number => Math.min(s.maxSize, s.ceiling)

// ----------------------------------------------------------------------------------------------------- the queue

/** A persistent FIFO: pushed onto `back`, popped from `front`, amortised O(1). @internal */
export interface Fifo<A> {
  readonly front: Stack.Stack<A>
  readonly back: Stack.Stack<A>
}

/** @internal */
export const emptyFifo: Fifo<never> = { front: Stack.nil, back: Stack.nil }

/** @internal */
export const push = <A>(q: Fifo<A>, a: A): Fifo<A> => ({ front: q.front, back: Stack.push(q.back, a) })

/** Oldest first. @internal */
export const allOf = <A>(q: Fifo<A>): Array<A> => [...Stack.toArray(q.front), ...Stack.toArray(q.back).reverse()]

// ----------------------------------------------------------------------------------------------------- idle

/** The idle connections in the order they would be lent. @internal */
export const idleList = <A>(s: State<A>): Array<Entry<A>> =>
  s.idleBack === Stack.nil ? Stack.toArray(s.idle) : [...Stack.toArray(s.idle), ...Stack.toArray(s.idleBack).reverse()]

/** A patch that sets the idle connections to `list`, in lending order. @internal */
export const idlePatch = <A>(list: ReadonlyArray<Entry<A>>): Partial<State<A>> => ({
  idle: Stack.fromArray(list),
  idleBack: Stack.nil,
  idleCount: list.length
})

/** Idle connections, the one idle longest first. @internal */
export const longestIdleFirst = <A>(idle: ReadonlyArray<Entry<A>>): Array<Entry<A>> =>
  idle.slice().sort((a, b) => a.idleSince - b.idleSince)
