/**
 * `sanbox array serve`: the array daemon. Opens the block store and the control
 * catalogue in the data directory, serves ArrayService over gRPC and every LUN
 * and snapshot over NBD, and prints its endpoints on stdout, one per line:
 *
 *   rpc unix:/…/rpc.sock
 *   nbd nbd+unix:///?socket=/…/nbd.sock
 *
 * Logs go to stderr. SIGTERM/SIGINT drain: both servers stop accepting, NBD
 * connections finish their in-flight commands, then the store is flushed and
 * closed. Everything (LUNs, snapshots, hosts, mappings, exports) is on disk, so
 * a restart on the same directory picks up where it left off.
 *
 * Transport policy:
 *  - Unix sockets in the data directory are the default. On the NBD socket a
 *    session without TLS is the local host and sees every export; a session that
 *    does STARTTLS with a host's PSK is masked to that host.
 *  - NBD over TCP requires TLS-PSK (hosts' keys) unless --insecure.
 *  - gRPC over TCP needs TLS (--tls-cert/--tls-key) and a bearer token
 *    (--token-file), or --insecure. --token-file also applies on the Unix socket.
 */
import { readFile } from "node:fs/promises";
import { mkdirSync } from "node:fs";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { lockDirectory } from "../pid-lock.js";
import { waitForStopSignal } from "./run.js";
import type { Command } from "commander";
import { InvalidArgumentError, errorMessage } from "../errors.js";
import { createLogger } from "../log.js";
import { NBD_DEFAULT_PORT } from "../nbd/constants.js";
import { NbdServer } from "../nbd/server.js";
import { formatNbdUri, type NbdTransport } from "../nbd/uri.js";
import { parseTokenFile } from "../rpc/auth.js";
import { formatEndpoint, parseEndpoint, type RpcEndpoint } from "../rpc/endpoint.js";
import { serveArray } from "../rpc/server.js";
import { ArrayStore } from "../../simulator/array/array-store.js";
import { ArrayExportProvider } from "../../simulator/array/exports/array-export-provider.js";
import { IoCounters } from "../../simulator/array/exports/io-counters.js";
import { SanboxArrayService } from "../../simulator/array/service/array-service.js";
import { ControlState, type HostRecord } from "../../simulator/array/service/control-state.js";
import { defaultDataDir, nbdSocketPath, rpcSocketPath } from "./array-paths.js";

interface ServeOptions {
  data?: string;
  rpc?: string;
  nbd?: string;
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  insecure?: boolean;
  capacity?: string;
}

export function registerArrayServe(array: Command): void {
  array
    .command("serve")
    .description("run the array daemon: gRPC ArrayService + NBD exports of every LUN and snapshot; prints endpoints on stdout")
    .option("--data <dir>", "data directory (default: $SANBOX_HOME or ~/.local/share/sanbox/array)")
    .option("--rpc <endpoint>", "control endpoint: unix:PATH or HOST:PORT (default: unix:DATA/rpc.sock)")
    .option("--nbd <endpoint>", `NBD endpoint: unix:PATH or HOST:PORT (default: unix:DATA/nbd.sock; TCP port default ${NBD_DEFAULT_PORT})`)
    .option("--token-file <file>", "require this bearer token (first line of the file) on every gRPC call")
    .option("--tls-cert <file>", "PEM certificate chain for gRPC over TCP")
    .option("--tls-key <file>", "PEM private key for --tls-cert")
    .option("--insecure", "allow plaintext gRPC over TCP and NBD over TCP without TLS")
    .action(async (o: ServeOptions) => serve(o));
}

function nbdEndpoint(text: string): RpcEndpoint {
  if (text.startsWith("unix:")) return parseEndpoint(text);
  if (/^[^:]+$/.test(text)) return { kind: "tcp", host: text, port: NBD_DEFAULT_PORT, tls: false };
  return parseEndpoint(text);
}

async function serve(o: ServeOptions): Promise<void> {
  const log = createLogger("array");
  const dir = resolve(o.data ?? defaultDataDir());
  mkdirSync(dir, { recursive: true });
  const rpcEp = o.rpc !== undefined ? parseEndpoint(o.rpc) : ({ kind: "unix", path: rpcSocketPath(dir) } satisfies RpcEndpoint);
  const nbdEp = o.nbd !== undefined ? nbdEndpoint(o.nbd) : ({ kind: "unix", path: nbdSocketPath(dir) } satisfies RpcEndpoint);
  const insecure = o.insecure ?? false;
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new InvalidArgumentError("give both --tls-cert and --tls-key");
  const read = (what: string, f: string): Promise<Buffer> =>
    readFile(f).catch((e: unknown) => {
      throw new InvalidArgumentError(`cannot read ${what} ${f}: ${errorMessage(e)}`);
    });
  const tls = o.tlsCert !== undefined && o.tlsKey !== undefined ? { cert: await read("certificate", o.tlsCert), key: await read("key", o.tlsKey) } : undefined;
  if (rpcEp.kind === "tcp" && !insecure && (tls === undefined || o.tokenFile === undefined)) {
    throw new InvalidArgumentError("gRPC over TCP needs --tls-cert/--tls-key and --token-file, or --insecure");
  }
  let token: string | undefined;
  if (o.tokenFile !== undefined) {
    token = parseTokenFile(await readFile(o.tokenFile, "utf8").catch((e: unknown) => {
      throw new InvalidArgumentError(`cannot read token file ${o.tokenFile ?? ""}: ${errorMessage(e)}`);
    }));
    if (token === undefined) throw new InvalidArgumentError(`token file ${o.tokenFile} is empty`);
  }

  const unlock = await lockDirectory(dir, "array daemon");
  const store = await ArrayStore.open(dir);
  const control = await ControlState.open(dir);
  const psk = new Map<string, Buffer>();

  const tlsMode = nbdEp.kind === "tcp" && !insecure ? "require" : "on";
  let nbdTransport: NbdTransport = nbdEp.kind === "unix" ? { kind: "unix", path: nbdEp.path } : { kind: "tcp", host: nbdEp.host, port: nbdEp.port };
  const nbdUri = (exportName: string, host: HostRecord | null): string => {
    let t = nbdTransport;
    if (t.kind === "tcp" && (t.host === "0.0.0.0" || t.host === "::")) t = { ...t, host: hostname() };
    const tls = host !== null || tlsMode === "require";
    return formatNbdUri({ tls, transport: t, exportName, ...(host !== null ? { tlsUsername: host.pskIdentity } : {}) });
  };
  const counters = new IoCounters();
  const service = new SanboxArrayService({ store, control, psk, nbdUri, counters });
  const provider = new ArrayExportProvider(store, (session) => service.access(session), counters);
  const nbd = new NbdServer({ provider, tls: tlsMode, psk, log: log.child("nbd") });

  let rpc: Awaited<ReturnType<typeof serveArray>> | undefined;
  try {
    const bound = await nbd.listen(nbdEp.kind === "unix" ? { unix: nbdEp.path } : { host: nbdEp.host, port: nbdEp.port });
    if ("port" in bound) nbdTransport = { kind: "tcp", host: bound.host, port: bound.port };
    rpc = await serveArray(service, { endpoint: rpcEp, insecure, log: log.child("rpc"), ...(token !== undefined ? { token } : {}), ...(tls !== undefined ? { tls } : {}) });
  } catch (e: unknown) {
    await nbd.close().catch(() => undefined);
    await store.close();
    await unlock();
    throw e;
  }

  process.stdout.write(`rpc ${formatEndpoint(rpc.endpoint)}\nnbd ${formatNbdUri({ tls: tlsMode === "require", transport: nbdTransport, exportName: "" })}\n`);
  log.info(`serving ${dir}: rpc ${formatEndpoint(rpc.endpoint)}${token !== undefined ? " (bearer token)" : ""}, nbd ${nbdTransport.kind === "unix" ? nbdTransport.path : `${nbdTransport.host}:${nbdTransport.port}`} (tls ${tlsMode})`);

  await waitForStopSignal(log);
  log.info(`draining ${nbd.connectionCount} NBD connection(s)`);
  await Promise.all([nbd.close(), rpc.close()]);
  await store.flush();
  await store.close();
  await unlock();
  log.info("stopped");
}
