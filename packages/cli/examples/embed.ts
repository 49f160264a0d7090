import { PoolOptions } from "@connection-pool/cli"
import { ConnectionPool } from "@connection-pool/core"
import { Args, Command } from "@effect/cli"
import { Console, Effect } from "effect"

// our pool's flags (--max-size, --acquire-timeout, ... checked as the library checks them) in your own command
export const serve = Command.make(
  "serve",
  { pool: PoolOptions.options, port: Args.integer({ name: "PORT" }) },
  ({ pool, port }) =>
    Effect.scoped(Effect.gen(function*() {
      const driver = { connect: Effect.succeed({}), close: () => Effect.void } // your client's driver here
      const conns = yield* ConnectionPool.make({ ...pool, driver })
      yield* Console.log(`serving on ${port} with up to ${(yield* conns.stats).maxSize} connections`)
    }))
)

export const cli = Command.run(serve, { name: "serve", version: "1.0.0" })
