export {}

declare module "vitest" {
  export interface ProvidedContext {
    /** Connection URL of the suite-wide PostgreSQL: $PG_URL, or a throwaway cluster started by globalSetup. */
    pgUrl: string
    /** PostgreSQL bin directory ("" when PG_URL is given and no local PostgreSQL is installed). */
    pgBin: string
  }
}
