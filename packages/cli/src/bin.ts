/**
 * The `connection-pool` executable: runs {@link Cli.run} on `process.argv` and exits with its code. The first
 * Ctrl-C ends a running load early (its summary is still printed); the next one interrupts.
 *
 * @since 0.1.0
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { run, stop } from "./Cli.js"

const fiber = Effect.runFork(run(process.argv).pipe(Effect.provide(NodeContext.layer)))

process.on("SIGINT", () => {
  if (stop()) return
  Effect.runFork(Fiber.interrupt(fiber))
})

fiber.addObserver((exit) => process.exit(exit._tag === "Success" ? exit.value : 130))
