/**
 * @since 0.1.0
 */
export * as SqlitePool from "./SqlitePool.js"
