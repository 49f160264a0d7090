/**
 * What a strict-FIFO handoff costs in effect 3 before any pool features, next to `ConnectionPool` and effect's
 * `Pool.make`: the evidence behind the core suite's contended target. Opt-in (`npm run bench -- floor`).
 *
 * Same case as core's 1000-fiber run (10 tokens, 1000 fibers × 100 cycles, the use yields once), four subjects:
 *
 * - a fair handoff with its state in plain mutable fields (a token array and a waiter queue): the floor of a
 *   strict-FIFO pool on effect's fiber runtime;
 * - the same handoff with its state in one `TRef`, one `STM.commit` per acquire and per release, the waiter queue a
 *   persistent two-list FIFO inside the state: what issue 2's "state in STM, one transaction per acquire and per
 *   release" costs before any feature;
 * - `ConnectionPool.withConnection` (the same, plus timeouts, metrics, validation, spans, connects);
 * - effect's `Pool.make` (`Effect.scoped(Pool.get)`), which is not FIFO.
 */
import { Effect, List, Pool, STM, TRef } from "effect"
import { ConnectionPool } from "../packages/core/src/index.js"
import { gc, machineLine, median, positive, progress, rotate, times, versionOf } from "./common.js"

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
  with<X>(use: Effect.Effect<X>): Effect.Effect<X> {
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(this.acquire), (token) => Effect.ensuring(restore(use), this.release(token)))
    )
  }
}

interface Waiter {
  token: number | undefined
  resume: Resume | undefined
}

class FairState {
  constructor(
    readonly idle: List.List<number>,
    readonly front: List.List<Waiter>,
    readonly back: List.List<Waiter>,
    readonly waiting: number
  ) {}
}

/** The same handoff with its state in one TRef: one transaction per acquire and per release. */
class StmFair {
  readonly take: Effect.Effect<number | Waiter>
  readonly acquire: Effect.Effect<number>
  constructor(readonly state: TRef.TRef<FairState>) {
    this.take = STM.commit(TRef.modify(this.state, (s): [number | Waiter, FairState] => {
    if (List.isCons(s.idle)) return [s.idle.head, new FairState(s.idle.tail, s.front, s.back, s.waiting)]
    const waiter: Waiter = { token: undefined, resume: undefined }
    return [waiter, new FairState(s.idle, s.front, List.prepend(s.back, waiter), s.waiting + 1)]
  }))
    this.acquire = Effect.flatMap(this.take, (taken) =>
      typeof taken === "number" ? Effect.succeed(taken) : Effect.async<number>((resume) => {
        if (taken.token !== undefined) return resume(Effect.succeed(taken.token))
        taken.resume = resume
      }))
  }
  release(token: number): Effect.Effect<void> {
    const tx = TRef.modify(this.state, (s): [Waiter | undefined, FairState] => {
      if (s.waiting === 0) return [undefined, new FairState(List.prepend(s.idle, token), s.front, s.back, 0)]
      let front = s.front
      let back = s.back
      if (List.isNil(front)) {
        front = List.reverse(back)
        back = List.empty()
      }
      const cons = front as List.Cons<Waiter>
      return [cons.head, new FairState(s.idle, cons.tail, back, s.waiting - 1)]
    })
    return Effect.map(STM.commit(tx), (waiter) => {
      if (waiter === undefined) return
      waiter.token = token
      waiter.resume?.(Effect.succeed(token))
    })
  }
  with<X>(use: Effect.Effect<X>): Effect.Effect<X> {
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(this.acquire), (token) => Effect.ensuring(restore(use), this.release(token)))
    )
  }
}

interface Subject {
  readonly name: string
  readonly cycle: Effect.Effect<unknown, unknown>
}

const use = Effect.zipRight(Effect.yieldNow(), Effect.void)

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
    const initial = new FairState(List.fromIterable(plain.idle), List.empty(), List.empty(), 0)
    const stm = new StmFair(yield* TRef.make(initial))
    const subjects: ReadonlyArray<Subject> = [
      { name: "fair handoff, plain state", cycle: plain.with(use) },
      { name: "fair handoff, state in a TRef (2 commits/cycle)", cycle: stm.with(use) },
      { name: "ConnectionPool withConnection", cycle: pool.withConnection(() => use) },
      { name: "effect Pool.make", cycle: Effect.scoped(Effect.zipRight(Pool.get(effectPool), use)) }
    ]
    const results = new Map(subjects.map((s) => [s.name, [] as Array<number>]))
    yield* Effect.promise(async () => {
      for (const s of subjects) await measure(s) // warm-up
      for (let r = 0; r < rounds; r++) {
        progress(`floor: round ${r + 1}/${rounds}`)
        for (const s of rotate(subjects, r)) results.get(s.name)!.push(await measure(s))
      }
    })
    const baseline = median(results.get("effect Pool.make")!)
    const lines = [
      "## floor: the cost of a fair handoff in effect 3, before any pool feature",
      "",
      machineLine(),
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
    yield* Effect.sync(() => console.log(lines.join("\n")))
  })))
}
