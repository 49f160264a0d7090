/**
 * What a strict-FIFO handoff costs in effect 3 before any pool features, next to `ConnectionPool` and effect's
 * `Pool.make`: the evidence behind the core suite's contended target. Opt-in (`npm run bench -- floor`).
 *
 * Same case as core's 1000-fiber run (10 tokens, 1000 fibers × 100 cycles, the use yields once), six subjects:
 *
 * - a fair handoff with its state in plain mutable fields (a token array and a waiter queue): the floor of a
 *   strict-FIFO pool on effect's fiber runtime;
 * - the same handoff with its state in one `TRef`, one `STM.commit` per acquire and per release, the waiter queue a
 *   persistent two-stack FIFO inside the state, built on the same cells as the pool's (`internal/stack.ts`, not
 *   effect's `List`, which the pool stopped using as too slow): what "state in STM, one transaction per acquire
 *   and per release" costs before any feature;
 * - `ConnectionPool.withConnection` (the same, plus timeouts, metrics, validation, spans, connects);
 * - the plain-state handoff borrowed the scoped way (`Effect.scoped(Effect.acquireRelease(…))`), and
 *   `ConnectionPool`'s scoped `get`: the floor under the scoped target, and where the pool is against it;
 * - effect's `Pool.make` (`Effect.scoped(Pool.get)`), which is not FIFO.
 */
import { Effect, Pool, STM, TRef } from "effect"
import { ConnectionPool } from "../packages/core/src/index.js"
import * as Stack from "../packages/core/src/internal/stack.js"
import { commitLine, gc, machineLine, median, positive, progress, rotate, times, versionOf } from "./common.js"

const TOKENS = 10
const FIBERS = 1000
const CYCLES = 100
const DEFAULT_ROUNDS = 5

type Resume = (token: Effect.Effect<number>) => void

/** The floor: a fair handoff, its state in plain fields. A release goes to the oldest waiter. */
class PlainFair {
  readonly idle: Array<number> = Array.from({ length: TOKENS }, (_, i) => i)
  readonly waiters: Array<Resume> = []
  readonly acquire = Effect.async<number>((resume) => {
    if (this.idle.length > 0 && this.waiters.length === 0) return resume(Effect.succeed(this.idle.pop()!))
    this.waiters.push(resume)
  })
  release(token: number): Effect.Effect<void> {
    return Effect.sync(() => {
      const waiter = this.waiters.shift()
      if (waiter !== undefined) waiter(Effect.succeed(token))
      else this.idle.push(token)
    })
  }
  with(check: Check): Effect.Effect<void> {
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(this.acquire), (token) => Effect.ensuring(restore(check.use(token)), this.release(token)))
    )
  }
  /** The same handoff borrowed the scoped way, as `Effect.scoped(Pool.get)` is: the floor of a fair scoped borrow. */
  scoped(check: Check): Effect.Effect<void> {
    return Effect.scoped(
      Effect.flatMap(Effect.acquireRelease(this.acquire, (token) => this.release(token)), (token) => check.use(token))
    )
  }
}

interface Waiter {
  token: number | undefined
  resume: Resume | undefined
}

class FairState {
  constructor(
    readonly idle: Stack.Stack<number>,
    readonly front: Stack.Stack<Waiter>,
    readonly back: Stack.Stack<Waiter>,
    readonly waiting: number
  ) {}
}

/** The same handoff with its state in one TRef: one transaction per acquire and per release. */
class StmFair {
  readonly take: Effect.Effect<number | Waiter>
  readonly acquire: Effect.Effect<number>
  constructor(readonly state: TRef.TRef<FairState>) {
    this.take = STM.commit(TRef.modify(this.state, (s): [number | Waiter, FairState] => {
    if (s.idle instanceof Stack.Cell) return [s.idle.head, new FairState(s.idle.tail, s.front, s.back, s.waiting)]
    const waiter: Waiter = { token: undefined, resume: undefined }
    return [waiter, new FairState(s.idle, s.front, Stack.push(s.back, waiter), s.waiting + 1)]
  }))
    this.acquire = Effect.flatMap(this.take, (taken) =>
      typeof taken === "number" ? Effect.succeed(taken) : Effect.async<number>((resume) => {
        if (taken.token !== undefined) return resume(Effect.succeed(taken.token))
        taken.resume = resume
      }))
  }
  release(token: number): Effect.Effect<void> {
    const tx = TRef.modify(this.state, (s): [Waiter | undefined, FairState] => {
      if (s.waiting === 0) return [undefined, new FairState(Stack.push(s.idle, token), s.front, s.back, 0)]
      let front = s.front
      let back = s.back
      if (!(front instanceof Stack.Cell)) {
        front = Stack.reverse(back)
        back = Stack.nil
      }
      const cons = front as Stack.Cell<Waiter>
      return [cons.head, new FairState(s.idle, cons.tail, back, s.waiting - 1)]
    })
    return Effect.map(STM.commit(tx), (waiter) => {
      if (waiter === undefined) return
      waiter.token = token
      waiter.resume?.(Effect.succeed(token))
    })
  }
  with(check: Check): Effect.Effect<void> {
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(this.acquire), (token) => Effect.ensuring(restore(check.use(token)), this.release(token)))
    )
  }
}

interface Subject {
  readonly name: string
  readonly cycle: Effect.Effect<unknown, unknown>
  readonly check: Check
}

/**
 * What a subject did with its tokens, so that a broken handoff cannot post a good number: every use counted, and a
 * token lent while still lent counted as an overlap.
 */
class Check {
  uses = 0
  overlaps = 0
  readonly lent = new Set<unknown>()
  /** The use: holds the token across one yield, as the core suite's contended use does. */
  use(token: unknown): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.lent.has(token)) this.overlaps++
      this.lent.add(token)
      return Effect.zipRight(Effect.yieldNow(), Effect.sync(() => {
        this.lent.delete(token)
        this.uses++
      }))
    })
  }
}

const contended = (cycle: Effect.Effect<unknown, unknown>) =>
  Effect.forEach(
    Array.from({ length: FIBERS }),
    () =>
      Effect.suspend(() => {
        let i = 0
        return Effect.whileLoop({ while: () => i++ < CYCLES, body: () => cycle, step: () => {} })
      }),
    { concurrency: "unbounded", discard: true }
  )

/** Microseconds per cycle of one contended run. */
const measure = async (subject: Subject): Promise<number> => {
  gc()
  const start = performance.now()
  await Effect.runPromise(contended(subject.cycle))
  return (performance.now() - start) * 1000 / (FIBERS * CYCLES)
}

export const main = async (): Promise<void> => {
  const rounds = positive("BENCH_ROUNDS", process.env.BENCH_ROUNDS, DEFAULT_ROUNDS, true)
  await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    let n = 0
    const pool = yield* ConnectionPool.make({
      driver: { connect: Effect.sync(() => ({ id: n++ })), close: () => Effect.void },
      maxSize: TOKENS
    })
    const effectPool = yield* Pool.make({ acquire: Effect.sync(() => ({ id: n++ })), size: TOKENS })
    const plain = new PlainFair()
    const initial = new FairState(Stack.fromArray(plain.idle), Stack.nil, Stack.nil, 0)
    const stm = new StmFair(yield* TRef.make(initial))
    const checks = Array.from({ length: 6 }, () => new Check())
    const subjects: ReadonlyArray<Subject> = [
      { name: "fair handoff, plain state", cycle: plain.with(checks[0]), check: checks[0] },
      { name: "fair handoff, state in a TRef (2 commits/cycle)", cycle: stm.with(checks[1]), check: checks[1] },
      { name: "ConnectionPool withConnection", cycle: pool.withConnection((c) => checks[2].use(c)), check: checks[2] },
      { name: "fair handoff, plain state, scoped borrow", cycle: plain.scoped(checks[4]), check: checks[4] },
      {
        name: "ConnectionPool get (scoped)",
        cycle: Effect.scoped(Effect.flatMap(pool.get, (c) => checks[5].use(c))),
        check: checks[5]
      },
      {
        name: "effect Pool.make",
        cycle: Effect.scoped(Effect.flatMap(Pool.get(effectPool), (c) => checks[3].use(c))),
        check: checks[3]
      }
    ]
    const results = new Map(subjects.map((s) => [s.name, [] as Array<number>]))
    yield* Effect.promise(async () => {
      for (const s of subjects) await measure(s) // warm-up
      for (let r = 0; r < rounds; r++) {
        progress(`floor: round ${r + 1}/${rounds}`)
        for (const s of rotate(subjects, r)) results.get(s.name)!.push(await measure(s))
      }
    })
    const expected = (rounds + 1) * FIBERS * CYCLES // the warm-up and every round
    const problems = subjects.flatMap((s) => [
      ...(s.check.uses === expected ? [] : [`${s.name}: ${s.check.uses} uses for ${expected} cycles`]),
      ...(s.check.overlaps === 0 ? [] : [`${s.name}: lent a token already lent ${s.check.overlaps} times`])
    ])
    const baseline = median(results.get("effect Pool.make")!)
    const lines = [
      "## floor: the cost of a fair handoff in effect 3, before any pool feature",
      "",
      machineLine(),
      commitLine(),
      `- versions: effect ${versionOf("effect")}`,
      `- ${TOKENS} tokens, ${FIBERS} fibers × ${CYCLES} cycles, the use yields once; ` +
      `${rounds} rounds (BENCH_ROUNDS), subjects rotated each round, a full GC before each run; ` +
      "median µs per cycle (lower is better)",
      "",
      "| subject | µs per cycle (median) | min–max | Pool.make's time over this one |",
      "|---|--:|--:|--:|",
      ...subjects.map((s) => {
        const xs = results.get(s.name)!
        const m = median(xs)
        return `| ${s.name} | ${m.toFixed(2)} | ${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)} | ` +
          `${times(baseline / m, 2)} |`
      })
    ]
    lines.push(
      "",
      problems.length === 0
        ? "Checks: every subject completed every cycle and never lent a token that was still lent."
        : `Checks FAILED:\n${problems.map((p) => `- ${p}`).join("\n")}`
    )
    yield* Effect.sync(() => console.log(lines.join("\n")))
  })))
}
