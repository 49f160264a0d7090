import type * as Scheduler from "effect/Scheduler"
import type * as TRef from "effect/TRef"

// Committing a transition of the pool's state without the STM journal.
//
// The state is one `TRef` (the only source of truth; every STM transaction that reads it, in this pool or one
// composed over it, sees every change), and every change to it is a transition: a pure function of the state that
// returns a result and the next state. `STM.commit(TRef.modify(ref, f))` runs such a transition through the STM
// driver: a journal (a `Map`), an entry, an analysis pass, a commit pass, and a pass that wakes transactions
// retrying on the ref. On effect's single-threaded runtime a transaction runs synchronously from start to commit, so
// nothing can interleave with it; for a transaction that touches one ref and never retries, all of that machinery
// reduces to "read the current version, apply `f`, install the new version, wake the retriers". That is what a
// `Committer` does, with effect's own representation of a `TRef` (a `versioned` cell replaced on every write, and
// the `todos` of the transactions suspended on it), so that the hot path (acquire and release: two transactions per
// borrow) costs a function call rather than an STM run. STM transactions on the same ref (the background fibers,
// shutdown's `STM.check`, anything composed by a user) keep going through `STM.commit` and see the same state.
//
// `makeCommitter` checks the ref has that representation and `verify` (at the pool's start) that a write through it
// is what an STM read then sees; if either fails (a future effect), the pool commits through STM instead.

/** effect 3's representation of a `TRef` (`internal/stm/tRef.ts`), which `STM.commit` itself reads and writes. */
interface Internals<S> {
  versioned: { readonly value: S }
  todos: Map<number, () => unknown>
}

/**
 * Applies a transition to the state as one transaction, synchronously: what `STM.commit(TRef.modify(ref, f))`
 * does for a transition that never retries.
 *
 * @internal
 */
export type Committer<S> = <B>(f: (s: S) => readonly [B, S]) => B

/** A committer for `ref`, or `undefined` when the ref is not laid out as expected. @internal */
export const makeCommitter = <S>(ref: TRef.TRef<S>, scheduler: Scheduler.Scheduler): Committer<S> | undefined => {
  const cell = ref as unknown as Partial<Internals<S>>
  const versioned = cell.versioned
  if (!(cell.todos instanceof Map) || typeof versioned !== "object" || versioned === null || !("value" in versioned)) {
    return undefined
  }
  const Versioned = versioned.constructor as new(value: S) => { readonly value: S }
  const internals = cell as Internals<S>
  return (f) => {
    const current = internals.versioned.value
    const result = f(current)
    const next = result[1]
    if (next !== current) {
      internals.versioned = new Versioned(next)
      // as `STM.commit` does: the transactions suspended on the ref (`STM.retry`, `STM.check`) run again, later
      if (internals.todos.size > 0) {
        const todos = internals.todos
        internals.todos = new Map()
        scheduler.scheduleTask(() => wake(todos), 0)
      }
    }
    return result[0]
  }
}

/** Runs the suspended transactions' wake-ups in the order they suspended (effect's `Journal.execTodos`). */
const wake = (todos: Map<number, () => unknown>): void => {
  for (const [, todo] of Array.from(todos.entries()).sort((x, y) => x[0] - y[0])) todo()
}
