/**
 * @since 0.1.0
 */
export * as ConnectionPool from "./ConnectionPool.js"

/**
 * @since 0.1.0
 */
export * as PoolError from "./PoolError.js"

/**
 * @since 0.1.0
 */
export * as PoolStats from "./PoolStats.js"

/**
 * @since 0.2.0
 */
export * as MultiPool from "./MultiPool.js"

/**
 * @since 0.2.0
 */
export * as OptionCheck from "./OptionCheck.js"
