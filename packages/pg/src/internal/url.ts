import { parse } from "pg-connection-string"

/** Where a well-formed URL points, for messages: never its password. @internal */
export const parts = (url: string): { host?: string; port?: string; database?: string; user?: string } => {
  try {
    const p = parse(url)
    return {
      ...(p.host ? { host: p.host } : {}),
      ...(p.port ? { port: p.port } : {}),
      ...(p.database ? { database: p.database } : {}),
      ...(p.user ? { user: p.user } : {})
    }
  } catch {
    return {}
  }
}

/** The password a URL carries, to scrub from driver messages. @internal */
export const password = (url: string): string => {
  try {
    return parse(url).password ?? ""
  } catch {
    return ""
  }
}
