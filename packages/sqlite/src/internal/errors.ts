import * as Data from "effect/Data"

/**
 * The worker thread that held a connection exited (it crashed, or was terminated) while a statement ran on it.
 * The statement fails with an `SqlError` whose `cause` is this; the pool replaces the connection.
 * @internal
 */
export class WorkerCrashed extends Data.TaggedError("WorkerCrashed")<{
  readonly filename: string
  readonly reason: string
}> {
  override get message(): string {
    return `SQLite connection to "${this.filename}" lost: ${this.reason}`
  }
}
