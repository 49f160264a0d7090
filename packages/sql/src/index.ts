/**
 * @since 0.1.0
 */
export * as SqlRouter from "./SqlRouter.js"
