/**
 * Counts `__name` calls, the `Object.defineProperty(fn, "name", …)` that esbuild's keepNames (tsx) wraps every
 * closure bound to a name in. Import it before the code under test (dynamically, after it): each module esbuild
 * compiles keeps the `Object.defineProperty` it found when it was evaluated.
 */
const original = Object.defineProperty
let counting = false
let calls = 0
Object.defineProperty = function(target: any, key: PropertyKey, descriptor: PropertyDescriptor) {
  if (counting && key === "name" && typeof target === "function") calls++
  return original(target, key, descriptor)
} as typeof Object.defineProperty

/** `run` once to warm up (first uses may name things once), then again counted: the calls per one of its `n`. */
export const namesPer = async (run: () => Promise<unknown>, n: number): Promise<number> => {
  await run()
  calls = 0
  counting = true
  try {
    await run()
  } finally {
    counting = false
  }
  return calls / n
}

/** `namesPer` for each of `runs` (each one run of `n` borrows), printed as one JSON line for the parent test. */
export const printNamesPer = async (runs: Record<string, () => Promise<unknown>>, n: number): Promise<void> => {
  const per: Record<string, number> = {}
  for (const [name, run] of Object.entries(runs)) per[name] = await namesPer(run, n)
  console.log(JSON.stringify(per))
}
