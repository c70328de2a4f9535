/**
 * NBD URIs (NetworkBlockDevice/nbd doc/uri.md), parsed and printed by hand so that
 * the output is exactly what libnbd (nbdinfo, nbdcopy), qemu-img and nbdfuse accept.
 *
 *   nbd://host[:port]/export            TCP, plaintext (default port 10809)
 *   nbds://[user@]host[:port]/export    TCP, TLS required
 *   nbd+unix:///export?socket=PATH      Unix socket
 *   nbds+unix://[user@]/export?socket=PATH&tls-psk-file=FILE
 *
 * Decisions:
 * - The export name is the path without its leading `/`, percent-decoded (so
 *   `nbd://h//disk` names `/disk`). It is always printed with a leading `/`, so
 *   the empty export prints as `nbd+unix:///?socket=…`.
 * - Query strings are RFC 3986, not HTML forms: `+` is a literal plus, never a space
 *   (libnbd splits on `&`/`;` and percent-decodes, nothing more).
 * - The TLS username is the URI userinfo, as libnbd reads it; `tls-username=` in the
 *   query is accepted as an alias on input. Unknown query parameters are diagnosed,
 *   as the URI spec asks, except the spec's `tls-*` knobs we have no use for.
 */
import { InvalidArgumentError, quote } from "../errors.js";
import { NBD_DEFAULT_PORT } from "./constants.js";

export type NbdTransport = { kind: "tcp"; host: string; port: number } | { kind: "unix"; path: string };

export interface NbdUri {
  tls: boolean;
  transport: NbdTransport;
  exportName: string;
  tlsPskFile?: string;
  tlsUsername?: string;
}

const SCHEMES: Readonly<Record<string, { tls: boolean; unix: boolean }>> = {
  nbd: { tls: false, unix: false },
  nbds: { tls: true, unix: false },
  "nbd+unix": { tls: false, unix: true },
  "nbds+unix": { tls: true, unix: true },
};

/** Spec parameters we accept and ignore (certificate TLS is not ours). */
const IGNORED_PARAMS = new Set(["tls-type", "tls-hostname", "tls-verify-peer", "tls-certificates"]);

const URI_RE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#.*)?$/;

function bad(text: string, why: string): InvalidArgumentError {
  return new InvalidArgumentError(`invalid NBD URI ${quote(text)}: ${why}`);
}

function pctDecode(s: string, text: string, what: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw bad(text, `${what} has a malformed percent-escape`);
  }
}

export function parseNbdUri(text: string): NbdUri {
  const m = URI_RE.exec(text);
  if (m === null) throw bad(text, "expected SCHEME://[AUTHORITY]/[EXPORT][?QUERY]");
  const scheme = (m[1] ?? "").toLowerCase();
  const kind = SCHEMES[scheme];
  if (kind === undefined) throw bad(text, `unknown scheme ${quote(scheme)} (expected nbd, nbds, nbd+unix or nbds+unix)`);
  const authority = m[2] ?? "";
  const path = m[3] ?? "";
  const query = m[4];

  // Authority: [userinfo@]host[:port]
  let userinfo: string | undefined;
  let hostport = authority;
  const at = authority.lastIndexOf("@");
  if (at >= 0) {
    userinfo = pctDecode(authority.slice(0, at), text, "userinfo");
    hostport = authority.slice(at + 1);
  }
  let host: string;
  let portText: string | undefined;
  if (hostport.startsWith("[")) {
    const close = hostport.indexOf("]");
    if (close < 0) throw bad(text, "unterminated IPv6 literal");
    host = hostport.slice(1, close);
    const rest = hostport.slice(close + 1);
    if (rest !== "" && !rest.startsWith(":")) throw bad(text, "garbage after IPv6 literal");
    if (rest !== "") portText = rest.slice(1);
    if (!/^[0-9A-Fa-f:.]+(%25.+)?$/.test(host)) throw bad(text, `${quote(host)} is not an IPv6 literal`);
    host = pctDecode(host, text, "host");
  } else {
    const colon = hostport.lastIndexOf(":");
    if (colon >= 0) {
      portText = hostport.slice(colon + 1);
      hostport = hostport.slice(0, colon);
    }
    host = pctDecode(hostport, text, "host");
  }
  let port = NBD_DEFAULT_PORT;
  if (portText !== undefined && portText !== "") {
    if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      throw bad(text, `port ${quote(portText)} is not in 1..65535`);
    }
    port = Number(portText);
  }

  if (path !== "" && !path.startsWith("/")) throw bad(text, "path must start with /");
  const exportName = pctDecode(path.slice(1), text, "export name");
  if (exportName.includes("\0")) throw bad(text, "export name contains NUL");

  // Query: key=value pairs separated by & or ;
  const params = new Map<string, string>();
  if (query !== undefined && query !== "") {
    for (const part of query.split(/[&;]/)) {
      if (part === "") continue;
      const eq = part.indexOf("=");
      const key = pctDecode(eq < 0 ? part : part.slice(0, eq), text, "query key");
      const value = pctDecode(eq < 0 ? "" : part.slice(eq + 1), text, `query parameter ${key}`);
      if (params.has(key)) throw bad(text, `query parameter ${quote(key)} given twice`);
      params.set(key, value);
    }
  }

  let transport: NbdTransport;
  const socket = params.get("socket");
  params.delete("socket");
  if (kind.unix) {
    if (socket === undefined || socket === "") throw bad(text, `${scheme} needs a socket=PATH query parameter`);
    if (host !== "" || portText !== undefined) throw bad(text, `${scheme} takes no host or port (the socket parameter names the endpoint)`);
    transport = { kind: "unix", path: socket };
  } else {
    if (socket !== undefined) throw bad(text, `socket= is only valid with nbd+unix or nbds+unix, not ${scheme}`);
    transport = { kind: "tcp", host: host === "" ? "localhost" : host, port };
  }

  const u: NbdUri = { tls: kind.tls, transport, exportName };
  const psk = params.get("tls-psk-file");
  params.delete("tls-psk-file");
  if (psk !== undefined) {
    if (psk === "") throw bad(text, "tls-psk-file is empty");
    u.tlsPskFile = psk;
  }
  const queryUser = params.get("tls-username");
  params.delete("tls-username");
  if (userinfo !== undefined && queryUser !== undefined && userinfo !== queryUser) {
    throw bad(text, `TLS username given twice ("${userinfo}@" and tls-username=${queryUser})`);
  }
  const user = userinfo ?? queryUser;
  if (user !== undefined && user !== "") u.tlsUsername = user;

  for (const key of params.keys()) {
    if (!IGNORED_PARAMS.has(key) && !key.startsWith("x-")) {
      throw bad(text, `unknown query parameter ${quote(key)} (supported: socket, tls-psk-file, tls-username)`);
    }
  }
  return u;
}

/** Percent-encode everything outside `allowed` (plus unreserved characters), byte by byte in UTF-8. */
function pctEncode(s: string, allowed: string): string {
  let out = "";
  for (const byte of Buffer.from(s, "utf8")) {
    const ch = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-._~]/.test(ch) || (byte < 0x80 && allowed.includes(ch))) out += ch;
    else out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

// pchar minus ';' (libnbd treats it as a query separator only, but be conservative).
const PATH_ALLOWED = "/:@!$'()*,=";
// Query values: no '&', ';', '=', '+', '#', '%'.
const QUERY_ALLOWED = "/:@!$'()*,?";
const USER_ALLOWED = "!$'()*,;=";

export function formatNbdUri(u: NbdUri): string {
  const unix = u.transport.kind === "unix";
  const scheme = (u.tls ? "nbds" : "nbd") + (unix ? "+unix" : "");
  const user = u.tlsUsername !== undefined && u.tlsUsername !== "" ? `${pctEncode(u.tlsUsername, USER_ALLOWED)}@` : "";
  let host = "";
  if (u.transport.kind === "tcp") {
    const h = u.transport.host;
    host = h.includes(":") ? `[${h.replace(/%/g, "%25")}]` : pctEncode(h, "!$'()*,;=");
    if (u.transport.port !== NBD_DEFAULT_PORT) host += `:${u.transport.port}`;
  }
  const params: string[] = [];
  if (u.transport.kind === "unix") params.push(`socket=${pctEncode(u.transport.path, QUERY_ALLOWED)}`);
  if (u.tlsPskFile !== undefined) params.push(`tls-psk-file=${pctEncode(u.tlsPskFile, QUERY_ALLOWED)}`);
  const path = `/${pctEncode(u.exportName, PATH_ALLOWED)}`;
  return `${scheme}://${user}${host}${path}${params.length > 0 ? `?${params.join("&")}` : ""}`;
}

/** Accept either form at API boundaries. */
export function toNbdUri(uri: string | NbdUri): NbdUri {
  return typeof uri === "string" ? parseNbdUri(uri) : uri;
}
