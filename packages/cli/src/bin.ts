/**
 * The `connection-pool` executable: runs {@link Cli.run} on `process.argv` and exits with its code.
 *
 * @since 0.1.0
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import { run } from "./Cli.js"

NodeRuntime.runMain(
  run(process.argv).pipe(
    Effect.flatMap((code) => Effect.sync(() => process.exit(code))),
    Effect.provide(NodeContext.layer)
  ),
  { disableErrorReporting: true }
)
