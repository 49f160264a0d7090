/**
 * @since 0.1.0
 */
export * as PgPool from "./PgPool.js"

/**
 * @since 0.2.0
 */
export * as PgRouter from "./PgRouter.js"
