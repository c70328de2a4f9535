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
 *
 * Array outages (docs/hypervisor.md "Array restarts", "Deadlines"): every array
 * call and NBD request has the `ioTimeoutMs` deadline; NBD paths reconnect with
 * the bounded backoff of reconnect-policy.ts; the gRPC channel's own reconnect
 * backoff is capped at 1 s (ARRAY_CHANNEL).
 *
 * Datastore writer leases (docs/hypervisor.md "The writer lease"): stale
 * `leaseTimeoutMs` after the last heartbeat; heartbeats every quarter of it.
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
import { DEFAULT_RECONNECT_POLICY, checkPolicy } from "./reconnect-policy.js";
import { hypervisorService } from "./hypervisor-service.js";

export function defaultHypervisorDataDir(): string {
  const env = process.env.SANBOX_HYPERVISOR_HOME;
  return env !== undefined && env !== "" ? env : join(homedir(), ".local", "share", "sanbox", "hypervisor");
}

export function hypervisorSocketPath(dataDir: string): string {
  return join(dataDir, "hypervisor.sock");
}

/** Deadline of every array call and NBD request, unless --io-timeout says otherwise. */
export const DEFAULT_IO_TIMEOUT_MS = 30_000;
/** A datastore writer lease is stale this long after its last heartbeat, unless --lease-timeout says otherwise. */
export const DEFAULT_LEASE_TIMEOUT_MS = 10_000;
/**
 * Between writing the lease record and reading it back: longer than a rival's
 * read-to-write gap (a few ms on one array), short enough not to slow a mount.
 */
const LEASE_SETTLE_MS = 250;

/** grpc-js retries a lost channel itself; by default its backoff grows to 120 s, too slow for an array restart. */
const ARRAY_CHANNEL = { "grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 1_000, "grpc.use_local_subchannel_pool": 1 };

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
  /** Deadline of every array call and NBD request (default DEFAULT_IO_TIMEOUT_MS). */
  ioTimeoutMs?: number;
  /** Connection attempts before a path to a LUN is FAILED (default DEFAULT_RECONNECT_LIMIT). */
  reconnectLimit?: number;
  /** Datastore writer lease timeout (default DEFAULT_LEASE_TIMEOUT_MS). */
  leaseTimeoutMs?: number;
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
  const ioTimeoutMs = opts.ioTimeoutMs ?? DEFAULT_IO_TIMEOUT_MS;
  if (!Number.isSafeInteger(ioTimeoutMs) || ioTimeoutMs < 1) throw new InvalidArgumentError(`I/O timeout ${ioTimeoutMs} ms must be a positive integer`);
  const leaseTimeoutMs = opts.leaseTimeoutMs ?? DEFAULT_LEASE_TIMEOUT_MS;
  if (!Number.isSafeInteger(leaseTimeoutMs) || leaseTimeoutMs < 4 * LEASE_SETTLE_MS || leaseTimeoutMs > 0xffff_ffff) {
    throw new InvalidArgumentError(`lease timeout ${leaseTimeoutMs} ms must be an integer from ${4 * LEASE_SETTLE_MS} to ${0xffff_ffff}`);
  }
  const reconnect = checkPolicy({ ...DEFAULT_RECONNECT_POLICY, limit: opts.reconnectLimit ?? DEFAULT_RECONNECT_POLICY.limit });
  const unlock = await lockDirectory(dir, "hypervisor");
  const array = connectArray({ endpoint: opts.array, channelOptions: ARRAY_CHANNEL, ...(opts.arrayToken !== undefined ? { token: opts.arrayToken } : {}) });
  const link = new ArrayLink(array, { ioTimeoutMs, reconnect, log: log.child("path") });
  let hv: Hypervisor | undefined;
  try {
    await link.array.getArrayInfo({}, { timeoutMs: Math.min(ioTimeoutMs, 10_000) });
    hv = await Hypervisor.start(link, dir, log, { leaseTimeoutMs, leaseSettleMs: LEASE_SETTLE_MS });
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
