/**
 * The `connection-pool` command: `load`, `size` and `check` against PostgreSQL, an SQLite file or an embedded
 * SQLite database, every pool option a flag ({@link PoolOptions}). {@link run} parses a command line and runs it,
 * turning every failure into one line on stderr and an exit code: 2 for usage (unknown flag, bad value, bad
 * TARGET, an option the pool rejects), 1 for a failure at run time (unreachable server, bad file).
 *
 * @since 0.1.0
 */
import type * as CliApp from "@effect/cli/CliApp"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as ValidationError from "@effect/cli/ValidationError"
import type * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as commands from "./internal/commands.js"

/**
 * Writing `--report` failed.
 *
 * @since 0.1.0
 * @category errors
 */
export const ReportError = commands.ReportError

/**
 * @since 0.1.0
 * @category errors
 */
export type ReportError = commands.ReportError

const scrub = commands.scrub

/**
 * Ends a running `load` (or `size`) early, as the first Ctrl-C does in the `connection-pool` executable: the
 * workload stops and the summary of what ran is printed. False when nothing is running.
 *
 * @since 0.1.0
 * @category running
 */
export const stop: () => boolean = commands.requestStop

/**
 * The command, with its three subcommands.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("connection-pool").pipe(
  Command.withDescription("Load, size and check a connection pool against your database."),
  Command.withSubcommands([commands.loadCommand, commands.sizeCommand, commands.checkCommand])
)

const cli = Command.run(command, { name: "connection-pool", version: "0.1.0" })

/** Collapses a help doc to one line without ANSI codes. */
const oneLine = (doc: HelpDoc.HelpDoc): string =>
  // eslint-disable-next-line no-control-regex
  HelpDoc.toAnsiText(doc).replace(/\x1b\[[0-9;]*m/g, "").replace(/\s+/g, " ").trim()

const describe = (error: unknown): string => {
  const e = error as { _tag?: string; message?: string; cause?: { message?: string; _tag?: string } }
  const tag = e._tag ?? "Error"
  if (tag === "SqlError" && e.cause !== undefined) {
    const inner = e.cause._tag !== undefined ? `${e.cause._tag}: ${e.cause.message}` : e.cause.message
    return `${tag}: ${e.message}: ${inner}`
  }
  return `${tag}: ${e.message ?? String(error)}`
}

const fail = (line: string, code: number) =>
  Effect.sync(() => {
    process.stderr.write(`connection-pool: ${scrub(line)}\n`)
    return code
  })

/**
 * Parses `argv` (as `process.argv`: node, script, arguments) and runs the command. Never fails: every error is
 * one line on stderr, and the result is the exit code (0, 1 at run time, 2 for usage).
 *
 * @since 0.1.0
 * @category running
 */
export const run = (argv: ReadonlyArray<string>): Effect.Effect<number, never, CliApp.CliApp.Environment> =>
  Effect.flatMap(Effect.console, (console) =>
    // @effect/cli prints its own (multi-line, coloured) report of a usage error on Console.error: we print one line
    cli(argv).pipe(
      Effect.withConsole({ ...console, error: () => Effect.void } as Console.Console),
      Effect.as(0),
      Effect.catchAll((error: unknown) => {
        if (ValidationError.isValidationError(error)) {
          if (ValidationError.isHelpRequested(error)) return Effect.succeed(0)
          const text = "error" in error ? oneLine(error.error as HelpDoc.HelpDoc) : "invalid command line"
          return fail(`${text} (see --help)`, 2)
        }
        const tag = (error as { _tag?: string })._tag
        return fail(describe(error), tag === "BadTarget" || tag === "InvalidConfig" ? 2 : 1)
      }),
      Effect.catchAllDefect((defect) => fail(`unexpected failure: ${describe(defect)}`, 1))
    ))
