import { assert, describe, it } from "@effect/vitest"
import {
  Config,
  ConfigProvider,
  ConfigProviderPathPatch,
  Context,
  Deferred,
  Effect,
  Exit,
  Layer,
  Logger,
  Option,
  PubSub,
  Schedule,
  Scope,
  Stream
} from "effect"
import { ConnectionPool, OptionCheck } from "../src/index.js"
import { adjust, type Conn, hold, makeDriver, settle } from "./utils.js"

class Db extends ConnectionPool.Tag("test/ReconfiguredDb")<Db, Conn>() {}

/** A config provider over `env` as it is at each read, so a test can change the "environment" between reads. */
const mutableProvider = (env: Map<string, string>) =>
  ConfigProvider.fromFlat(ConfigProvider.makeFlat({
    load: (path, primitive, split) =>
      Effect.suspend(() => ConfigProvider.fromMap(env).flattened.load(path, primitive, split)),
    enumerateChildren: (path) => Effect.suspend(() => ConfigProvider.fromMap(env).flattened.enumerateChildren(path)),
    patch: ConfigProviderPathPatch.empty
  }))

/** Captures warnings and above, as text. */
const captureWarnings = (lines: Array<string>) =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Warning" || logLevel._tag === "Error") {
        lines.push(Array.isArray(message) ? message.join(" ") : String(message))
      }
    })
  )

describe("reconfigure", () => {
  it.scoped("changes sizes and timeouts live; in-use connections are never dropped", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 3, acquireTimeout: "10 seconds" })
      const holders = [yield* hold(pool), yield* hold(pool), yield* hold(pool)]
      for (const h of holders) yield* Deferred.await(h.got)
      yield* ConnectionPool.reconfigure(pool, { maxSize: 1, acquireTimeout: "1 second" })
      let s = yield* pool.stats
      assert.deepStrictEqual([s.maxSize, s.total, s.inUse], [1, 3, 3]) // none dropped
      assert.strictEqual(t.open().length, 3)

      // the new acquireTimeout applies to the next caller
      const late = yield* hold(pool)
      yield* adjust("1 second")
      const timeout = yield* Effect.flip(Deferred.await(late.got))
      assert.strictEqual(timeout._tag, "PoolTimeout")
      assert.match(timeout.message, /acquireTimeout 1s/)

      // released above the new maxSize: closed
      yield* holders[0].release
      yield* holders[1].release
      yield* settle
      s = yield* pool.stats
      assert.deepStrictEqual([s.total, s.inUse, s.idle], [1, 1, 0])
      assert.strictEqual(t.open().length, 1)
      yield* holders[2].release
      yield* pool.pipe(ConnectionPool.reconfigure({ maxSize: 4, minSize: 2 }))
      yield* settle
      s = yield* pool.stats
      assert.deepStrictEqual([s.minSize, s.maxSize, s.total], [2, 4, 2]) // refilled to the new minSize
    }))

  it.scoped("a larger maxSize serves callers already waiting at once", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
      const a = yield* hold(pool)
      yield* Deferred.await(a.got)
      const b = yield* hold(pool)
      const c = yield* hold(pool)
      yield* settle
      assert.strictEqual((yield* pool.stats).waiting, 2)
      yield* pool.reconfigure({ maxSize: 3 })
      assert.deepStrictEqual([(yield* Deferred.await(b.got)).id, (yield* Deferred.await(c.got)).id].sort(), [2, 3])
      for (const h of [a, b, c]) yield* h.release
    }))

  it.scoped("an invalid value is an InvalidConfig and the old config is kept, all of it", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ name: "kept", driver: t.driver, maxSize: 2, acquireTimeout: "2 seconds" })
      const reject = (changes: ConnectionPool.Reconfiguration) => Effect.map(Effect.flip(pool.reconfigure(changes)), (e) => e.message)
      assert.strictEqual(yield* reject({ maxSize: 0 }), "invalid pool option maxSize = 0: must be at least 1")
      assert.strictEqual(yield* reject({ minSize: 3 }), "invalid pool option minSize = 3: must not exceed maxSize (2)")
      assert.strictEqual(yield* reject({ idleTimeout: -1 }), "invalid pool option idleTimeout = -1: must not be negative")
      // one bad field rejects the whole change: the good ones beside it are not applied either
      assert.strictEqual(
        yield* reject({ maxSize: 5, acquireTimeout: "30 seconds", connectBackoff: "1 minute" }),
        "invalid pool option connectBackoffMax = undefined: must not be below connectBackoff"
      )
      assert.strictEqual(yield* reject({ maxWaiting: -2 }), "invalid pool option maxWaiting = -2: must be at least 0")
      const typo = yield* Effect.flip(pool.reconfigure({ maxsize: 5 } as ConnectionPool.Reconfiguration))
      assert.strictEqual(typo.message, "invalid pool option maxsize = 5: is not a pool option")
      const driver = yield* Effect.flip(pool.reconfigure({ driver: t.driver } as ConnectionPool.Reconfiguration))
      assert.strictEqual(driver.message, "invalid pool option driver = \"<driver>\": cannot change while the pool runs")
      const renamed = yield* Effect.flip(pool.reconfigure({ name: "other" } as ConnectionPool.Reconfiguration))
      assert.strictEqual(renamed.option, "name")
      assert.match(renamed.message, /cannot change while the pool runs/)
      // chosen at start: the borrow path and the leak watcher
      const nested = yield* Effect.flip(pool.reconfigure({ nested: "fail" }))
      assert.deepStrictEqual([nested.option, nested.value], ["nested", "fail"])
      assert.match(nested.message, /cannot change while the pool runs/)
      const leak = yield* Effect.flip(pool.reconfigure({ leakDetectionThreshold: "1 second" }))
      assert.strictEqual(leak.option, "leakDetectionThreshold")
      yield* pool.reconfigure({ nested: "reuse" }) // the value it has: nothing changes, nothing fails

      const s = yield* pool.stats
      assert.deepStrictEqual([s.name, s.maxSize, s.minSize], ["kept", 2, 0])
      const a = yield* hold(pool)
      const b = yield* hold(pool)
      const c = yield* hold(pool)
      yield* adjust("2 seconds") // still the old acquireTimeout
      assert.strictEqual((yield* Effect.flip(Deferred.await(c.got)))._tag, "PoolTimeout")
      yield* a.release
      yield* b.release
    }))

  it.scoped("a shorter idleTimeout closes idle connections at once, not at the housekeeper's next pass", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 3, minSize: 1, idleTimeout: "10 minutes" })
      const holders = [yield* hold(pool), yield* hold(pool), yield* hold(pool)]
      for (const h of holders) yield* Deferred.await(h.got)
      for (const h of holders) yield* h.release
      yield* adjust("2 minutes")
      assert.strictEqual((yield* pool.stats).idle, 3)
      yield* pool.reconfigure({ idleTimeout: "1 minute" })
      yield* settle // the clock does not move
      const s = yield* pool.stats
      assert.deepStrictEqual([s.total, s.idle, s.destroyed], [1, 1, 2]) // down to minSize
    }))

  it.scoped("a shorter acquireTimeout holds for callers already waiting; a longer one only for those after", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1, acquireTimeout: "30 seconds" })
      const a = yield* hold(pool)
      yield* Deferred.await(a.got)
      const early = yield* hold(pool) // arrives at 0
      yield* adjust("2 seconds")
      const second = yield* hold(pool) // arrives at 2 s
      yield* settle
      yield* pool.reconfigure({ acquireTimeout: "3 seconds" })
      yield* settle
      // early's deadline moved from 30 s to 3 s; the sweeper, asleep until 30 s, was woken
      yield* adjust("1 second")
      const e = yield* Effect.flip(Deferred.await(early.got))
      assert.strictEqual(e._tag, "PoolTimeout")
      assert.isTrue(Option.isNone(yield* Deferred.poll(second.got))) // still waiting: its deadline is 2 s + 3 s
      assert.strictEqual((yield* pool.stats).waiting, 1)
      yield* pool.reconfigure({ acquireTimeout: "1 minute" }) // longer: second keeps 2 s + 3 s
      const third = yield* hold(pool) // arrives at 3 s, deadline 63 s
      yield* adjust("2 seconds")
      assert.strictEqual((yield* Effect.flip(Deferred.await(second.got)))._tag, "PoolTimeout")
      assert.strictEqual((yield* pool.stats).waiting, 1)
      yield* a.release
      assert.strictEqual((yield* Deferred.await(third.got)).id, 1)
      yield* third.release
      assert.strictEqual((yield* pool.stats).timeouts, 2)
    }))

  it.scoped("a shorter maxLifetime retires idle connections at once and those in use when released", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 2, maxLifetime: "30 minutes" })
      const a = yield* hold(pool)
      const b = yield* hold(pool)
      yield* Deferred.await(a.got)
      yield* Deferred.await(b.got)
      yield* b.release
      yield* adjust("5 minutes")
      yield* pool.reconfigure({ maxLifetime: "1 minute" })
      yield* settle
      let s = yield* pool.stats
      assert.deepStrictEqual([s.total, s.inUse, s.idle], [1, 1, 0]) // the idle one is gone; the one in use stays
      assert.strictEqual((yield* Deferred.await(a.got)).closes, 0)
      yield* a.release
      yield* settle
      s = yield* pool.stats
      assert.deepStrictEqual([s.total, s.destroyed], [0, 2])
      assert.strictEqual(t.open().length, 0)
    }))

  it.scoped("maxWaiting can be set live: the next caller past it is shed", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 1 })
      const a = yield* hold(pool)
      yield* Deferred.await(a.got)
      const b = yield* hold(pool)
      const c = yield* hold(pool)
      yield* settle
      yield* pool.reconfigure({ maxWaiting: 1 })
      // already queued past the new limit: kept
      assert.strictEqual((yield* pool.stats).waiting, 2)
      const error = yield* Effect.flip(Effect.scoped(pool.get))
      assert.strictEqual(error._tag, "PoolOverloaded")
      yield* a.release
      yield* Deferred.await(b.got)
      yield* b.release
      yield* Deferred.await(c.got)
      yield* c.release
    }))

  it.scoped("concurrent reconfigures each merge into what the one before left", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 2 })
      yield* Effect.all([
        pool.reconfigure({ maxSize: 6 }),
        pool.reconfigure({ minSize: 1 }),
        pool.reconfigure({ maxWaiting: 3 })
      ], { concurrency: "unbounded" })
      const s = yield* pool.stats
      assert.deepStrictEqual([s.maxSize, s.minSize], [6, 1])
    }))

  it.scoped("resize keeps what reconfigure set, and the other way round", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const pool = yield* ConnectionPool.make({ driver: t.driver, maxSize: 4, acquireTimeout: "10 seconds" })
      yield* pool.reconfigure({ acquireTimeout: "1 second" })
      yield* pool.resize({ maxSize: 1 })
      yield* pool.reconfigure({ idleTimeout: "1 minute" })
      assert.strictEqual((yield* pool.stats).maxSize, 1)
      const a = yield* hold(pool)
      const b = yield* hold(pool)
      yield* adjust("1 second")
      assert.strictEqual((yield* Effect.flip(Deferred.await(b.got)))._tag, "PoolTimeout")
      yield* a.release
    }))
})

describe("layerConfig with reload", () => {
  const config = {
    name: Config.succeed("live"),
    maxSize: Config.integer("DB_MAX_SIZE"),
    acquireTimeout: OptionCheck.durationConfig("DB_ACQUIRE_TIMEOUT")
  }

  it.scoped("re-reads the Config on a schedule: sizes and timeouts change live, bad values are logged and ignored", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const env = new Map([["DB_MAX_SIZE", "1"], ["DB_ACQUIRE_TIMEOUT", "10 seconds"]])
      const warnings: Array<string> = []
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        Db.layerConfig(t.driver, config, { reload: Schedule.spaced("30 seconds") }).pipe(
          Layer.provide(Layer.setConfigProvider(mutableProvider(env))),
          Layer.provide(captureWarnings(warnings))
        ),
        scope
      )
      const pool = Context.get(context, Db)
      const a = yield* hold(pool)
      yield* Deferred.await(a.got)
      assert.strictEqual((yield* pool.stats).maxSize, 1)

      env.set("DB_MAX_SIZE", "3")
      env.set("DB_ACQUIRE_TIMEOUT", "1 second")
      yield* adjust("29 seconds")
      assert.strictEqual((yield* pool.stats).maxSize, 1) // not yet
      yield* adjust("1 second")
      assert.strictEqual((yield* pool.stats).maxSize, 3)
      const b = yield* hold(pool)
      assert.strictEqual((yield* Deferred.await(b.got)).id, 2)

      // an invalid value: logged, nothing changes
      env.set("DB_MAX_SIZE", "0")
      yield* adjust("30 seconds")
      assert.strictEqual((yield* pool.stats).maxSize, 3)
      assert.strictEqual(warnings.length, 1)
      assert.match(warnings[0]!, /pool config not reloaded, keeping the current one: invalid pool option maxSize = 0/)
      // one that does not parse: logged, nothing changes
      env.set("DB_MAX_SIZE", "ten")
      yield* adjust("30 seconds")
      assert.strictEqual((yield* pool.stats).maxSize, 3)
      assert.strictEqual(warnings.length, 2)
      assert.match(warnings[1]!, /pool config not reloaded.*DB_MAX_SIZE/)
      // the timeout read at the good reload is in force
      const c = yield* hold(pool)
      const d = yield* hold(pool)
      yield* adjust("1 second")
      assert.strictEqual((yield* Effect.flip(Deferred.await(d.got)))._tag, "PoolTimeout")

      // shrinking drops no connection in use
      env.set("DB_MAX_SIZE", "1")
      yield* adjust("30 seconds")
      const s = yield* pool.stats
      assert.deepStrictEqual([s.maxSize, s.inUse], [1, 3])
      assert.strictEqual((yield* Deferred.await(a.got)).closes, 0)

      // the reload fiber ends with the layer's scope
      for (const h of [a, b, c]) yield* h.release
      yield* Scope.close(scope, Exit.void)
      env.set("DB_MAX_SIZE", "0")
      yield* adjust("1 minute")
      assert.strictEqual(warnings.length, 2)
      assert.strictEqual(t.open().length, 0)
    }))

  it.scoped("re-reads the Config on each signal of a Stream (here a PubSub)", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const env = new Map([["DB_MAX_SIZE", "2"], ["DB_ACQUIRE_TIMEOUT", "10 seconds"]])
      const signal = yield* PubSub.unbounded<void>()
      const context = yield* Layer.build(
        Db.layerConfig(t.driver, config, { reload: Stream.fromPubSub(signal) }).pipe(
          Layer.provide(Layer.setConfigProvider(mutableProvider(env)))
        )
      )
      const pool = Context.get(context, Db)
      yield* settle
      env.set("DB_MAX_SIZE", "5")
      yield* settle
      assert.strictEqual((yield* pool.stats).maxSize, 2) // no signal yet
      yield* PubSub.publish(signal, undefined)
      yield* settle
      assert.strictEqual((yield* pool.stats).maxSize, 5)
      yield* Db.reconfigure({ maxSize: 4 }).pipe(Effect.provide(context))
      assert.strictEqual((yield* pool.stats).maxSize, 4)
    }))

  it.effect("without reload, layerConfig reads once, as before", () =>
    Effect.gen(function*() {
      const t = makeDriver()
      const env = new Map([["DB_MAX_SIZE", "2"], ["DB_ACQUIRE_TIMEOUT", "10 seconds"]])
      const max = yield* Effect.gen(function*() {
        env.set("DB_MAX_SIZE", "6")
        yield* adjust("10 minutes")
        return (yield* Db.stats).maxSize
      }).pipe(
        Effect.provide(Db.layerConfig(t.driver, config)),
        Effect.withConfigProvider(mutableProvider(env))
      )
      assert.strictEqual(max, 2)
    }))
})
