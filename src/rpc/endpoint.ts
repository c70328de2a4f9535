/**
 * Control-plane endpoints: `unix:PATH` (also `unix://PATH`) or `HOST:PORT`.
 * The same text is the grpc-js bind address and client target.
 */
import { InvalidArgumentError } from "../errors.js";

export type RpcEndpoint = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

export function parseEndpoint(text: string): RpcEndpoint {
  if (text.startsWith("unix:")) {
    const path = text.startsWith("unix://") ? text.slice("unix://".length) : text.slice("unix:".length);
    if (path === "") throw new InvalidArgumentError(`endpoint "${text}": empty socket path`);
    return { kind: "unix", path };
  }
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || m[1] === undefined || port > 65535) throw new InvalidArgumentError(`endpoint "${text}": expected unix:PATH or HOST:PORT`);
  return { kind: "tcp", host: m[1], port };
}

export function formatEndpoint(e: RpcEndpoint): string {
  return e.kind === "unix" ? `unix:${e.path}` : `${e.host}:${e.port}`;
}
