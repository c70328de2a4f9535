/**
 * The hypervisor daemon, assembled: a link to the array's gRPC endpoint, the
 * Hypervisor (datastore mounts, VMs, workload, quiesce) on a data directory,
 * and HypervisorService over gRPC. `sanbox hypervisor serve`, the tests and
 * the benchmarks start it through `startHypervisorDaemon`.
 *
 * Transport policy: a Unix socket in the data directory by default; gRPC over
 * TCP only with `insecure` (the hypervisor serves no TLS).
 *
 * Invariants: the directory is locked for the daemon's life; the array is
 * reached (GetArrayInfo) before anything is served, so a wrong --array fails
 * at start; a start that fails part-way releases what it opened.
 */
import { mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { InvalidArgumentError } from "../../src/errors.js";
import { createLogger, type Logger } from "../../src/log.js";
import { lockDirectory } from "../../src/pid-lock.js";
import { connectArray } from "../../src/rpc/array-client.js";
import type { RpcEndpoint } from "../../src/rpc/endpoint.js";
import { serveHypervisor } from "../../src/rpc/hypervisor-service-def.js";
import { ArrayLink } from "./array-link.js";
import { Hypervisor } from "./hypervisor.js";
import { hypervisorService } from "./hypervisor-service.js";

export function defaultHypervisorDataDir(): string {
  const env = process.env.SANBOX_HYPERVISOR_HOME;
  return env !== undefined && env !== "" ? env : join(homedir(), ".local", "share", "sanbox", "hypervisor");
}

export function hypervisorSocketPath(dataDir: string): string {
  return join(dataDir, "hypervisor.sock");
}

export interface HypervisorDaemonOptions {
  dataDir: string;
  /** The array's gRPC endpoint (unix:PATH or HOST:PORT). */
  array: string;
  /** Bearer token for the array. */
  arrayToken?: string;
  /** Default: unix:DATA/hypervisor.sock. */
  rpc?: RpcEndpoint;
  /** Bearer token required on every HypervisorService call. */
  token?: string;
  insecure?: boolean;
  log?: Logger;
}

export interface HypervisorDaemon {
  readonly dataDir: string;
  readonly rpc: RpcEndpoint;
  readonly array: RpcEndpoint;
  close(): Promise<void>;
}

export async function startHypervisorDaemon(opts: HypervisorDaemonOptions): Promise<HypervisorDaemon> {
  const log = opts.log ?? createLogger("hypervisor");
  const dir = resolve(opts.dataDir);
  mkdirSync(dir, { recursive: true });
  const endpoint: RpcEndpoint = opts.rpc ?? { kind: "unix", path: hypervisorSocketPath(dir) };
  const insecure = opts.insecure ?? false;
  if (endpoint.kind === "tcp" && !insecure) throw new InvalidArgumentError("gRPC over TCP needs --insecure (the hypervisor serves no TLS)");
  const unlock = await lockDirectory(dir, "hypervisor");
  const link = new ArrayLink(connectArray({ endpoint: opts.array, ...(opts.arrayToken !== undefined ? { token: opts.arrayToken } : {}) }));
  let hv: Hypervisor | undefined;
  try {
    await link.array.getArrayInfo({}, { timeoutMs: 10_000 });
    hv = await Hypervisor.start(link, dir, log);
    const rpc = await serveHypervisor(hypervisorService(hv), { endpoint, insecure, log: log.child("rpc"), ...(opts.token !== undefined ? { token: opts.token } : {}) });
    const running = hv;
    return {
      dataDir: dir,
      rpc: rpc.endpoint,
      array: link.array.endpoint,
      close: async () => {
        try {
          await rpc.close();
          await running.close();
        } finally {
          link.close();
          await unlock();
        }
      },
    };
  } catch (e: unknown) {
    await hv?.close().catch(() => undefined);
    link.close();
    await unlock();
    throw e;
  }
}
