import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Random from "effect/Random"
import * as STM from "effect/STM"
import * as TRef from "effect/TRef"
import type * as ConnectionPool from "../../ConnectionPool.js"
import { ConnectionError } from "../../PoolError.js"

/**
 * One server's health, in STM so that selection, the connect hooks and the prober agree. A server is usable when
 * nobody marked it unhealthy and no ban is in force; a ban whose time is up still holds until its probe succeeds.
 * @internal
 */
export interface Health {
  /** Connects that failed in a row (a refusal for want of room does not count). */
  readonly failures: number
  readonly lastError: ConnectionError | undefined
  /** Clock millis when the ban's probe is due; `undefined` when not banned. */
  readonly bannedUntil: number | undefined
  /** Bumped by every ban and unban, so a prober that slept knows whether its ban is still the one in force. */
  readonly epoch: number
  /** Marked unhealthy by hand: skipped until marked healthy, never probed nor unbanned automatically. */
  readonly marked: boolean
}

/** @internal */
export const initial: Health = { failures: 0, lastError: undefined, bannedUntil: undefined, epoch: 0, marked: false }

/** @internal */
export const usable = (h: Health): boolean => !h.marked && h.bannedUntil === undefined

/** Ban policy, resolved. @internal */
export interface BanPolicy {
  /** Consecutive connect failures that ban a server; 0 turns automatic bans off. */
  readonly after: number
  readonly timeMs: number
  readonly jitter: number
}

/** The ban's length: `timeMs` shortened by a random fraction up to `jitter`, so bans do not expire together. */
const banLength = (policy: BanPolicy) => Effect.map(Random.next, (r) => policy.timeMs * (1 - policy.jitter * r))

/** A connect went through: the failure streak, and any ban (as during an unban-all), ends. @internal */
export const recordSuccess = (health: TRef.TRef<Health>): Effect.Effect<void> =>
  STM.commit(TRef.update(health, (h) =>
    h.failures === 0 && h.bannedUntil === undefined
      ? h
      : { ...h, failures: 0, bannedUntil: undefined, epoch: h.epoch + 1 }
  ))

/** A connect failed; returns whether this failure banned the server. @internal */
export const recordFailure = (
  health: TRef.TRef<Health>,
  policy: BanPolicy,
  error: ConnectionError
): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    if (error.atCapacity === true) return false
    const length = yield* banLength(policy)
    const now = yield* Clock.currentTimeMillis
    return yield* STM.commit(TRef.modify(health, (h): [boolean, Health] => {
      const failures = h.failures + 1
      const ban = policy.after > 0 && failures >= policy.after && h.bannedUntil === undefined && !h.marked
      return [ban, {
        ...h,
        failures,
        lastError: error,
        ...(ban ? { bannedUntil: now + length, epoch: h.epoch + 1 } : {})
      }]
    }))
  })

/**
 * Wraps a server's driver so that every connect (a caller's, or the pool's background refill) reports to the
 * server's health.
 * @internal
 */
export const watch = <A, R>(
  driver: ConnectionPool.Driver<A, R>,
  health: TRef.TRef<Health>,
  policy: BanPolicy,
  server: string
): ConnectionPool.Driver<A, R> => ({
  ...driver,
  connect: driver.connect.pipe(
    Effect.tapBoth({
      onSuccess: () => recordSuccess(health),
      onFailure: (error) =>
        Effect.flatMap(recordFailure(health, policy, error), (banned) =>
          banned
            ? Effect.logWarning(`server "${server}" banned after ${policy.after} failed connects: ${error.message}`)
            : Effect.void)
    })
  )
})

/**
 * Opens one connection (validating it when the driver can) and closes it: the probe that lifts a ban.
 * @internal
 */
export const probe = <A, R>(
  driver: ConnectionPool.Driver<A, R>,
  server: string,
  timeout: Duration.Duration
): Effect.Effect<void, ConnectionError, R> =>
  Effect.scoped(Effect.gen(function*() {
    const conn = yield* Effect.acquireRelease(driver.connect, (conn) => driver.close(conn))
    if (driver.validate !== undefined && !(yield* driver.validate(conn))) {
      return yield* new ConnectionError({ reason: `server "${server}": its probe connection failed validation` })
    }
  })).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () =>
        new ConnectionError({
          reason: `server "${server}": probe got no connection within ${Duration.format(timeout)}`
        })
    })
  )

/** Waits for a ban of this server, returning its due time and epoch. */
const awaitBan = (health: TRef.TRef<Health>) =>
  STM.commit(STM.flatMap(TRef.get(health), (h) =>
    h.bannedUntil === undefined ? STM.retry : STM.succeed({ until: h.bannedUntil, epoch: h.epoch })
  ))

/**
 * The server's prober, a background fiber: once a ban is due it probes, off the request path and once for
 * everyone; success lifts the ban, failure bans again for a fresh (jittered) time.
 * @internal
 */
export const prober = <R>(
  health: TRef.TRef<Health>,
  policy: BanPolicy,
  server: string,
  runProbe: Effect.Effect<void, ConnectionError, R>
): Effect.Effect<never, never, R> =>
  Effect.forever(Effect.gen(function*() {
    const ban = yield* awaitBan(health)
    const now = yield* Clock.currentTimeMillis
    if (ban.until > now) yield* Effect.sleep(Duration.millis(ban.until - now))
    const current = yield* TRef.get(health)
    if (current.epoch !== ban.epoch || current.bannedUntil === undefined) return // lifted or renewed meanwhile
    const exit = yield* Effect.exit(runProbe)
    const length = yield* banLength(policy)
    const at = yield* Clock.currentTimeMillis
    const lifted = yield* STM.commit(TRef.modify(health, (h): [boolean | undefined, Health] => {
      if (h.epoch !== ban.epoch) return [undefined, h]
      return Exit.isSuccess(exit)
        ? [true, { ...h, failures: 0, bannedUntil: undefined, epoch: h.epoch + 1 }]
        : [false, {
          ...h,
          lastError: exit.cause._tag === "Fail" ? exit.cause.error : h.lastError,
          bannedUntil: at + length,
          epoch: h.epoch + 1
        }]
    }))
    if (lifted === true) yield* Effect.logInfo(`server "${server}" is back: its probe connected, ban lifted`)
    else if (lifted === false) yield* Effect.logDebug(`server "${server}" still down: probe failed, banned again`)
  }))

/**
 * Every server is banned: lift all automatic bans at once rather than fail every caller (pgcat's safety).
 * Servers marked unhealthy by hand stay out. Returns how many were lifted.
 * @internal
 */
export const unbanAll = (healths: ReadonlyArray<TRef.TRef<Health>>): STM.STM<number> =>
  STM.reduce(healths, 0, (n, health) =>
    TRef.modify(health, (h): [number, Health] =>
      h.bannedUntil === undefined || h.marked
        ? [n, h]
        : [n + 1, { ...h, failures: 0, bannedUntil: undefined, epoch: h.epoch + 1 }]))

/** @internal */
export const mark = (health: TRef.TRef<Health>, healthy: boolean): Effect.Effect<void> =>
  STM.commit(TRef.update(health, (h) =>
    healthy
      ? { ...h, marked: false, failures: 0, bannedUntil: undefined, epoch: h.epoch + 1 }
      : { ...h, marked: true }
  ))
