/**
 * `sanbox array serve`: the array daemon. Opens the block store and the control
 * catalogue in the data directory, serves ArrayService and the CSI services
 * (Identity, Controller, GroupController, SnapshotMetadata) on one gRPC
 * endpoint and every LUN and snapshot over NBD, and prints its endpoints on stdout, one per line:
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
 *
 * `--backend rbd --ceph-conf FILE --pool NAME` puts the LUNs on Ceph RBD
 * (simulator/array/rbd/, docs/rbd.md); hosts, masking and the catalogue stay in
 * the data directory.
 */
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { Command } from "commander";
import { InvalidArgumentError, errorMessage, quote } from "../src/errors.js";
import { createLogger } from "../src/log.js";
import { NBD_DEFAULT_PORT } from "../src/nbd/constants.js";
import { parseTokenFile } from "../src/rpc/auth.js";
import { formatEndpoint, parseEndpoint, type RpcEndpoint } from "../src/rpc/endpoint.js";
import { parseSize } from "../src/size.js";
import { BLOCK_METADATA_MODES, type BlockMetadataMode } from "../simulator/array/csi/index.js";
import { startArrayDaemon } from "../simulator/array/daemon.js";
import { RbdBackend } from "../simulator/array/rbd/rbd-backend.js";
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
  backend?: string;
  cephConf?: string;
  pool?: string;
  objectSize?: string;
  cephTimeout?: string;
  csiBlockMetadata?: string;
}

export function registerArrayServe(array: Command): void {
  array
    .command("serve")
    .description("run the array daemon: gRPC ArrayService and CSI services + NBD exports of every LUN and snapshot; prints endpoints on stdout")
    .option("--data <dir>", "data directory (default: $SANBOX_HOME or ~/.local/share/sanbox/array)")
    .option("--rpc <endpoint>", "control endpoint: unix:PATH or HOST:PORT (default: unix:DATA/rpc.sock)")
    .option("--nbd <endpoint>", `NBD endpoint: unix:PATH or HOST:PORT (default: unix:DATA/nbd.sock; TCP port default ${NBD_DEFAULT_PORT})`)
    .option("--token-file <file>", "require this bearer token (first line of the file) on every gRPC call")
    .option("--tls-cert <file>", "PEM certificate chain for gRPC over TCP")
    .option("--tls-key <file>", "PEM private key for --tls-cert")
    .option("--insecure", "allow plaintext gRPC over TCP and NBD over TCP without TLS")
    .option("--json", "print the endpoints as one JSON line ({rpc, nbd})")
    .option("--backend <kind>", "where LUNs live: local (the block store in DATA) or rbd (Ceph RBD images)", "local")
    .option("--ceph-conf <file>", "with --backend rbd: the ceph.conf to use")
    .option("--pool <name>", "with --backend rbd: the RBD pool")
    .option("--object-size <size>", "with --backend rbd: object size of new images, the CBT granularity (default 64K)")
    .option("--ceph-timeout <seconds>", "with --backend rbd: how long to wait for Ceph at start and per call (default 20)")
    .option("--csi-block-metadata <type>", "CSI SnapshotMetadata tuples: variable (coalesced ranges) or fixed (one CBT granule each)", "variable")
    .action(async (options: ServeOptions) => serve(options));
}

function blockMetadataMode(text: string): BlockMetadataMode {
  const mode = BLOCK_METADATA_MODES.find((m) => m === text);
  if (mode === undefined) throw new InvalidArgumentError(`--csi-block-metadata must be ${BLOCK_METADATA_MODES.join(" or ")}, not ${quote(text)}`);
  return mode;
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
  const backend = options.backend ?? "local";
  if (backend !== "local" && backend !== "rbd") throw new InvalidArgumentError(`--backend must be local or rbd, not "${backend}"`);
  let openBackend: ((dir: string) => Promise<RbdBackend>) | undefined;
  if (backend === "rbd") {
    const conf = options.cephConf;
    const pool = options.pool;
    if (conf === undefined || pool === undefined) throw new InvalidArgumentError("--backend rbd needs --ceph-conf FILE and --pool NAME");
    const objectSize = options.objectSize !== undefined ? parseSize(options.objectSize) : undefined;
    const seconds = options.cephTimeout !== undefined ? Number(options.cephTimeout) : 20;
    if (!Number.isFinite(seconds) || seconds <= 0) throw new InvalidArgumentError(`--ceph-timeout must be a positive number of seconds, not "${options.cephTimeout}"`);
    openBackend = (dir) => RbdBackend.open({ dataDir: dir, conf: resolve(conf), pool, timeoutMs: seconds * 1000, ...(objectSize !== undefined ? { objectSize } : {}) });
  } else if (options.cephConf !== undefined || options.pool !== undefined || options.objectSize !== undefined) {
    throw new InvalidArgumentError("--ceph-conf, --pool and --object-size need --backend rbd");
  }
  const csiBlockMetadata = blockMetadataMode(options.csiBlockMetadata ?? "variable");
  const daemon = await startArrayDaemon({
    dataDir,
    csiBlockMetadata,
    ...(openBackend !== undefined ? { openBackend } : {}),
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
  await stopped.received;
  await stopped.shutdown(() => daemon.close());
  log.info("stopped");
}
