/**
 * The array daemon, assembled: the block store and the control catalogue on a
 * data directory, ArrayService and the CSI services (csi/, adapters over the
 * ArrayService object served) on one gRPC endpoint, every LUN and snapshot
 * over NBD.
 * `sanbox array serve`, the tests and the benchmarks all start the array
 * through `startArrayDaemon`, in-process or as a process running that command.
 *
 * Transport policy (docs/array-serve.md):
 *  - Unix sockets in the data directory are the default. On the NBD socket a
 *    session without TLS is the local host and sees every export; a session that
 *    does STARTTLS with a host's PSK is masked to that host.
 *  - NBD over TCP requires TLS-PSK (hosts' keys) unless `insecure`.
 *  - gRPC over TCP needs TLS and a bearer token, or `insecure`.
 *
 * TEST-ONLY faults (SANBOX_FAILPOINTS, src/failpoints.ts) are read once here,
 * before anything is opened: an unknown name fails the start; active faults are
 * logged as a warning and wrap the service, the export provider and the CSI
 * services (faults/index.ts). Without any, the real objects are served as they are.
 *
 * Invariants: the directory is locked for the daemon's life (one daemon per
 * directory); `close()` drains NBD connections and in-flight RPCs before the
 * store is flushed and closed; a start that fails part-way releases what it
 * opened, lock included.
 */
import { mkdirSync } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { InvalidArgumentError } from "../../src/errors.js";
import { activeFaults } from "../../src/failpoints.js";
import { createLogger, type Logger } from "../../src/log.js";
import { NbdServer } from "../../src/nbd/server.js";
import { formatNbdUri, type NbdTransport } from "../../src/nbd/uri.js";
import { serveArray, type ArrayServiceImpl } from "../../src/rpc/array-service-def.js";
import { csiImplementations, type CsiServices } from "../../src/rpc/csi-service-defs.js";
import type { RpcEndpoint } from "../../src/rpc/endpoint.js";
import type { RunningRpcServer } from "../../src/rpc/server.js";
import { lockDirectory } from "../../src/pid-lock.js";
import { ArrayStore } from "./array-store.js";
import type { ArrayBackend } from "./backend.js";
import { createCsiServices, type BlockMetadataMode } from "./csi/index.js";
import { ArrayExportProvider } from "./exports/array-export-provider.js";
import { wrapWithFaults } from "./faults/index.js";
import { IoCounters } from "./exports/io-counters.js";
import { SanboxArrayService } from "./service/array-service.js";
import { ControlState, type HostRecord } from "./service/control-state.js";

export function rpcSocketPath(dataDir: string): string {
  return join(dataDir, "rpc.sock");
}

export function nbdSocketPath(dataDir: string): string {
  return join(dataDir, "nbd.sock");
}

export interface ArrayDaemonOptions {
  /** Data directory: block store, control catalogue and (by default) the sockets. */
  dataDir: string;
  /** Default: unix:DATA/rpc.sock. */
  rpc?: RpcEndpoint;
  /** Default: unix:DATA/nbd.sock. */
  nbd?: RpcEndpoint;
  /** Bearer token required on every RPC. */
  token?: string;
  /** PEM certificate chain and key for gRPC over TCP. */
  tls?: { cert: Buffer; key: Buffer };
  /** Plaintext gRPC over TCP, NBD over TCP without TLS. */
  insecure?: boolean;
  /** Opens the LUN backend (backend.ts) for the data directory. Default: the local block store in it. */
  openBackend?: (dataDir: string) => Promise<ArrayBackend>;
  /** CSI SnapshotMetadata tuples: "variable" (default) or "fixed" (one CBT granule each). */
  csiBlockMetadata?: BlockMetadataMode;
  log?: Logger;
}

export interface ArrayDaemon {
  readonly dataDir: string;
  /** The bound gRPC endpoint (TCP port 0 resolved). */
  readonly rpc: RpcEndpoint;
  /** The NBD server's base URI (empty export name). */
  readonly nbd: string;
  /** TLS mode of the NBD listener: "require" on TCP unless insecure. */
  readonly nbdTls: "on" | "require";
  readonly connections: () => number;
  /** Drain both servers, flush and close the store, release the directory. */
  close(): Promise<void>;
}

export async function startArrayDaemon(opts: ArrayDaemonOptions): Promise<ArrayDaemon> {
  const log = opts.log ?? createLogger("array");
  const dir = resolve(opts.dataDir);
  mkdirSync(dir, { recursive: true });
  const rpcEp = opts.rpc ?? { kind: "unix", path: rpcSocketPath(dir) };
  const nbdEp = opts.nbd ?? { kind: "unix", path: nbdSocketPath(dir) };
  const insecure = opts.insecure ?? false;
  if (rpcEp.kind === "tcp" && !insecure && (opts.tls === undefined || opts.token === undefined)) {
    throw new InvalidArgumentError("gRPC over TCP needs --tls-cert/--tls-key and --token-file, or --insecure");
  }
  const faults = activeFaults();
  if (faults.size > 0) log.warn(`TEST-ONLY failpoints enabled, this array breaks its contract on purpose: ${[...faults].join(", ")}`);

  const unlock = await lockDirectory(dir, "array daemon");
  let store: ArrayBackend | undefined;
  let nbd: NbdServer | undefined;
  let rpc: RunningRpcServer | undefined;
  try {
    store = await (opts.openBackend ?? ((d: string) => ArrayStore.open(d)))(dir);
    const control = await ControlState.open(dir);
    const psk = new Map<string, Buffer>();
    const nbdTls = nbdEp.kind === "tcp" && !insecure ? "require" : "on";
    let nbdTransport: NbdTransport = nbdEp.kind === "unix" ? { kind: "unix", path: nbdEp.path } : { kind: "tcp", host: nbdEp.host, port: nbdEp.port };
    const nbdUri = (exportName: string, host: HostRecord | null): string => {
      let t = nbdTransport;
      if (t.kind === "tcp" && (t.host === "0.0.0.0" || t.host === "::")) t = { ...t, host: hostname() };
      const tls = host !== null || nbdTls === "require";
      return formatNbdUri({ tls, transport: t, exportName, ...(host !== null ? { tlsUsername: host.pskIdentity } : {}) });
    };
    const counters = new IoCounters();
    const real = new SanboxArrayService({ store, control, psk, nbdUri, counters });
    const provider0 = new ArrayExportProvider(store, (session) => real.access(session), counters);
    const csiOver = (array: ArrayServiceImpl): CsiServices => createCsiServices(array, { blockMetadata: opts.csiBlockMetadata ?? "variable" });
    const fronts = { service: real, provider: provider0 };
    const { service, provider, csi } = faults.size > 0 ? wrapWithFaults(fronts, store, faults, csiOver) : { ...fronts, csi: csiOver(real) };
    nbd = new NbdServer({ provider, tls: nbdTls, psk, log: log.child("nbd") });
    const bound = await nbd.listen(nbdEp.kind === "unix" ? { unix: nbdEp.path } : { host: nbdEp.host, port: nbdEp.port });
    if ("port" in bound) nbdTransport = { kind: "tcp", host: bound.host, port: bound.port };
    rpc = await serveArray(
      service,
      {
        endpoint: rpcEp,
        insecure,
        log: log.child("rpc"),
        ...(opts.token !== undefined ? { token: opts.token } : {}),
        ...(opts.tls !== undefined ? { tls: opts.tls } : {}),
      },
      csiImplementations(csi),
    );
    const [openStore, server, rpcServer] = [store, nbd, rpc];
    return {
      dataDir: dir,
      rpc: rpcServer.endpoint,
      nbd: formatNbdUri({ tls: nbdTls === "require", transport: nbdTransport, exportName: "" }),
      nbdTls,
      connections: () => server.connectionCount,
      close: async () => {
        log.info(`draining ${server.connectionCount} NBD connection(s)`);
        const t0 = Date.now();
        await Promise.all([server.close(), rpcServer.close()]);
        log.debug(`NBD and gRPC drained in ${Date.now() - t0} ms`);
        try {
          await openStore.flush();
        } finally {
          await openStore.close();
          await unlock();
        }
      },
    };
  } catch (e: unknown) {
    await rpc?.close().catch(() => undefined);
    await nbd?.close().catch(() => undefined);
    await store?.close().catch(() => undefined);
    await unlock();
    throw e;
  }
}
