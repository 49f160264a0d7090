/**
 * A persistent stack for the pool's state: one small object per cell. effect's `List` builds each cell with
 * `Object.create` behind a dual `prepend`, which is slower on the acquire and release paths.
 *
 * @internal
 */

/** @internal */
export class Cell<A> {
  constructor(readonly head: A, readonly tail: Stack<A>) {}
}

/** The empty stack: an object, not `undefined`, so that a state patch can set it. @internal */
export const nil: { readonly _tag: "Nil" } = { _tag: "Nil" }

/** @internal */
export type Stack<A> = Cell<A> | typeof nil

/** @internal */
export const push = <A>(stack: Stack<A>, a: A): Stack<A> => new Cell(a, stack)

/** @internal */
export const reverse = <A>(stack: Stack<A>): Stack<A> => {
  let out: Stack<A> = nil
  for (let s = stack; s instanceof Cell; s = s.tail) out = new Cell(s.head, out)
  return out
}

/** Head first. @internal */
export const toArray = <A>(stack: Stack<A>): Array<A> => {
  const out: Array<A> = []
  for (let s = stack; s instanceof Cell; s = s.tail) out.push(s.head)
  return out
}

/** `array[0]` becomes the head. @internal */
export const fromArray = <A>(array: ReadonlyArray<A>): Stack<A> => {
  let out: Stack<A> = nil
  for (let i = array.length - 1; i >= 0; i--) out = new Cell(array[i], out)
  return out
}
