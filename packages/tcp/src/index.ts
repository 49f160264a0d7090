/**
 * @since 0.1.0
 */
export * as Connection from "./Connection.js"

/**
 * @since 0.1.0
 */
export * as Endpoint from "./Endpoint.js"

/**
 * @since 0.1.0
 */
export * as TcpError from "./TcpError.js"

/**
 * @since 0.1.0
 */
export * as TcpPool from "./TcpPool.js"
