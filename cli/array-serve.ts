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
 * This file is flags and output only; the daemon's assembly and transport
 * policy are simulator/array/daemon.ts. --token-file also applies on the Unix socket.
 */
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { Command } from "commander";
import { InvalidArgumentError, errorMessage } from "../src/errors.js";
import { createLogger } from "../src/log.js";
import { NBD_DEFAULT_PORT } from "../src/nbd/constants.js";
import { parseTokenFile } from "../src/rpc/auth.js";
import { formatEndpoint, parseEndpoint, type RpcEndpoint } from "../src/rpc/endpoint.js";
import { startArrayDaemon } from "../simulator/array/daemon.js";
import { defaultDataDir } from "./array-paths.js";
import { waitForStopSignal } from "./run.js";

interface ServeOptions {
  data?: string;
  rpc?: string;
  nbd?: string;
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  insecure?: boolean;
  json?: boolean;
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
    .option("--json", "print the endpoints as one JSON line ({rpc, nbd})")
    .action(async (options: ServeOptions) => serve(options));
}

function nbdEndpoint(text: string): RpcEndpoint {
  if (text.startsWith("unix:")) return parseEndpoint(text);
  if (/^[^:]+$/.test(text)) return { kind: "tcp", host: text, port: NBD_DEFAULT_PORT, tls: false };
  return parseEndpoint(text);
}

async function serve(options: ServeOptions): Promise<void> {
  const log = createLogger("array");
  const dataDir = resolve(options.data ?? defaultDataDir());
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) throw new InvalidArgumentError("give both --tls-cert and --tls-key");
  const read = (what: string, f: string): Promise<Buffer> =>
    readFile(f).catch((e: unknown) => {
      throw new InvalidArgumentError(`cannot read ${what} ${f}: ${errorMessage(e)}`);
    });
  const tls = options.tlsCert !== undefined && options.tlsKey !== undefined ? { cert: await read("certificate", options.tlsCert), key: await read("key", options.tlsKey) } : undefined;
  let token: string | undefined;
  if (options.tokenFile !== undefined) {
    token = parseTokenFile((await read("token file", options.tokenFile)).toString("utf8"));
    if (token === undefined) throw new InvalidArgumentError(`token file ${options.tokenFile} is empty`);
  }
  const daemon = await startArrayDaemon({
    dataDir,
    log,
    insecure: options.insecure ?? false,
    ...(options.rpc !== undefined ? { rpc: parseEndpoint(options.rpc) } : {}),
    ...(options.nbd !== undefined ? { nbd: nbdEndpoint(options.nbd) } : {}),
    ...(token !== undefined ? { token } : {}),
    ...(tls !== undefined ? { tls } : {}),
  });
  // Listen before announcing: whoever reads the endpoint line may signal at once.
  const stopped = waitForStopSignal(log);
  process.stdout.write(options.json === true ? `${JSON.stringify({ rpc: formatEndpoint(daemon.rpc), nbd: daemon.nbd })}\n` : `rpc ${formatEndpoint(daemon.rpc)}\nnbd ${daemon.nbd}\n`);
  log.info(`serving ${dataDir}: rpc ${formatEndpoint(daemon.rpc)}${token !== undefined ? " (bearer token)" : ""}, nbd ${daemon.nbd} (tls ${daemon.nbdTls})`);
  await stopped;
  await daemon.close();
  log.info("stopped");
}
