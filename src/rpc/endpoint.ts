/**
 * Control-plane endpoints:
 *   unix:PATH (also unix://PATH)   local socket
 *   HOST:PORT                      TCP, plaintext (the daemon needs --insecure)
 *   tls:HOST:PORT                  TCP with TLS (server certificate checked
 *                                  against the CA in $SANBOX_CA or --ca, else the system roots)
 * Without the `tls:` prefix the text is also the grpc-js bind address and target.
 */
import { InvalidArgumentError, quote } from "../errors.js";

export type RpcEndpoint = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number; tls: boolean };

export function parseEndpoint(text: string): RpcEndpoint {
  if (text.startsWith("unix:")) {
    const path = text.startsWith("unix://") ? text.slice("unix://".length) : text.slice("unix:".length);
    if (path === "") throw new InvalidArgumentError(`endpoint ${quote(text)}: empty socket path`);
    return { kind: "unix", path };
  }
  const tls = text.startsWith("tls:");
  const rest = tls ? text.slice("tls:".length) : text;
  const m = /^(\[[^\]]+\]|[^:/]+):(\d{1,5})$/.exec(rest);
  const port = m ? Number(m[2]) : NaN;
  if (!m || m[1] === undefined || port > 65535) throw new InvalidArgumentError(`endpoint ${quote(text)}: expected unix:PATH, HOST:PORT or tls:HOST:PORT`);
  return { kind: "tcp", host: m[1], port, tls };
}

/** The printable form (round-trips through parseEndpoint). */
export function formatEndpoint(e: RpcEndpoint): string {
  return e.kind === "unix" ? `unix:${e.path}` : `${e.tls ? "tls:" : ""}${e.host}:${e.port}`;
}

/** The grpc-js address (bind address or channel target). */
export function grpcAddress(e: RpcEndpoint): string {
  return e.kind === "unix" ? `unix:${e.path}` : `${e.host}:${e.port}`;
}
