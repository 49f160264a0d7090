/**
 * @since 0.1.0
 */
export * as Cli from "./Cli.js"

/**
 * @since 0.1.0
 */
export * as PoolOptions from "./PoolOptions.js"

/**
 * @since 0.1.0
 */
export * as Target from "./Target.js"
