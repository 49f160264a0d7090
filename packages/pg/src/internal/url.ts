import { parse } from "pg-connection-string"

/**
 * What is wrong with a connection URL, or undefined when it is a well-formed `postgres://` or `postgresql://` URL.
 * The answer never quotes the URL: anything after the user name may be a password (one with an unencoded `/`
 * makes the rest of the URL look like a path).
 * @internal
 */
export const problem = (url: string, hostOption: boolean): string | undefined => {
  if (url.trim() !== url) return "it has leading or trailing whitespace"
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase()
  if (scheme !== "postgres" && scheme !== "postgresql") {
    return "it does not start with postgres:// or postgresql://"
  }
  const rest = url.slice(scheme.length + 1)
  if (!rest.startsWith("//")) {
    return `"//" is missing after "${scheme}:" (write ${scheme}://user:password@host:port/database)`
  }
  const afterSlashes = rest.slice(2)
  const authorityEnd = afterSlashes.search(/[/?#]/)
  const authority = authorityEnd === -1 ? afterSlashes : afterSlashes.slice(0, authorityEnd)
  const tail = authorityEnd === -1 ? "" : afterSlashes.slice(authorityEnd)
  if (!authority.includes("@") && tail.includes("@")) {
    return "the user name or password contains an unencoded \"/\", \"?\" or \"#\" " +
      "(percent-encode it, for example with encodeURIComponent)"
  }
  const at = authority.lastIndexOf("@")
  const hostPort = at === -1 ? authority : authority.slice(at + 1)
  const hp = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]*)(?::(.*))?$/.exec(hostPort)
  if (hp === null) return "its host is not a host name, an IPv4 address or a bracketed IPv6 address"
  const [, host, port] = hp
  if (port !== undefined && port !== "") {
    if (!/^\d+$/.test(port)) return "its port is not a number"
    if (Number(port) < 1 || Number(port) > 65535) return "its port is out of range (1 to 65535)"
  }
  try {
    // pg-connection-string's own trick for an empty host (a unix socket given as ?host=)
    new URL(host === "" ? url.replace("@/", "@___DUMMY___/") : url)
  } catch {
    return "it is not a valid URL"
  }
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse(url)
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code
    const why = typeof code === "string" ? ` (${code})` : ""
    return `its parameters could not be read${why}, for example an ssl file it names`
  }
  if (host === "" && !parsed.host && !hostOption) {
    return "it names no host (write postgres://user@host:port/database, or give the host option)"
  }
  return undefined
}

/** The password a URL carries, to scrub from driver messages. @internal */
export const password = (url: string): string => {
  try {
    return parse(url).password ?? ""
  } catch {
    return ""
  }
}

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
