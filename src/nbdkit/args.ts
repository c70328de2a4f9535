/**
 * nbdkit's command line as a pure function of typed options, so it can be unit
 * tested without a process. Order matters to nbdkit: server flags, then
 * `--filter=` (outermost first), then the plugin, then every `key=value` (plugin
 * and filter parameters share one list after the plugin name).
 */
import { InvalidArgumentError, quote } from "../errors.js";

export interface NbdkitOptions {
  plugin: string;
  /** Positional (`1G`) or `key=value` strings, or a record printed as `key=value`. */
  pluginArgs?: string[] | Record<string, string>;
  /** Outermost first, as on nbdkit's command line. */
  filters?: string[];
  filterArgs?: Record<string, string>;
  /** Unix socket path; default: a fresh socket in a private temp directory. */
  unixSocket?: string;
  /** Listen on 127.0.0.1:port instead of a Unix socket. */
  port?: number;
  readOnly?: boolean;
  exportName?: string;
  tls?: "off" | "on" | "require";
  tlsPskFile?: string;
  threads?: number;
  verbose?: boolean;
  extraArgs?: string[];
  /** Milliseconds to wait for nbdkit to accept connections (default 15000). */
  startTimeoutMs?: number;
}

export type NbdkitEndpoint = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

function keyValues(r: Record<string, string>, what: string): string[] {
  return Object.entries(r).map(([k, v]) => {
    if (k === "" || k.includes("=")) throw new InvalidArgumentError(`nbdkit ${what} key ${quote(k)} is empty or contains "="`);
    return `${k}=${v}`;
  });
}

export function buildNbdkitArgs(opts: NbdkitOptions, endpoint: NbdkitEndpoint): string[] {
  if (opts.plugin === "" || opts.plugin.startsWith("-")) throw new InvalidArgumentError(`invalid nbdkit plugin ${quote(opts.plugin)}`);
  const args = ["--foreground", "--exit-with-parent"];
  if (endpoint.kind === "unix") args.push("--unix", endpoint.path);
  else args.push("--ipaddr", endpoint.host, "--port", String(endpoint.port));
  if (opts.readOnly === true) args.push("--readonly");
  if (opts.exportName !== undefined) args.push("--exportname", opts.exportName);
  if (opts.tls !== undefined) args.push(`--tls=${opts.tls}`);
  if (opts.tlsPskFile !== undefined) args.push(`--tls-psk=${opts.tlsPskFile}`);
  if (opts.threads !== undefined) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1) throw new InvalidArgumentError(`nbdkit threads must be a positive integer, got ${opts.threads}`);
    args.push("--threads", String(opts.threads));
  }
  if (opts.verbose === true) args.push("--verbose");
  args.push(...(opts.extraArgs ?? []));
  for (const f of opts.filters ?? []) args.push(`--filter=${f}`);
  args.push(opts.plugin);
  const pa = opts.pluginArgs;
  if (Array.isArray(pa)) args.push(...pa);
  else if (pa !== undefined) args.push(...keyValues(pa, "plugin parameter"));
  if (opts.filterArgs !== undefined) args.push(...keyValues(opts.filterArgs, "filter parameter"));
  return args;
}
