/**
 * A fault-injection front for any NBD export: nbdkit's `nbd` plugin proxies the
 * upstream URI, and its `error`, `delay` and `rate` filters inject failures,
 * latency and bandwidth limits, so backup software can be tested against a flaky
 * array. Filter order (outermost first): error → delay → rate, so an injected
 * error answers at once and delays apply only to requests that go through.
 *
 * `error.file` makes faults switchable at run time: errors are injected only while
 * that file exists (nbdkit's error-file), so a test can break the array mid-backup.
 */
import type { Errno } from "../errors.js";
import type { NbdkitOptions } from "./args.js";
import { Nbdkit } from "./nbdkit.js";

export type FaultOp = "pread" | "pwrite" | "trim" | "zero" | "extents" | "cache" | "flush";

export interface FaultFrontOptions {
  /** The export to proxy, as an NBD URI. */
  upstream: string;
  /**
   * Proxy every export of the upstream server: the client's export name is
   * passed through (nbd plugin `dynamic-export=true`; the URI's export name is
   * then ignored), so the front can stand in for a whole array endpoint.
   */
  allExports?: boolean;
  error?: {
    errno?: Errno;
    /** A probability, as nbdkit reads it: "10%" or "0.1"; default 100% (with `file`, while it exists). */
    rate?: string;
    /** Inject only while this file exists. */
    file?: string;
    /** Restrict to these operations (default: all). */
    ops?: FaultOp[];
  };
  /** Per-operation latency, as nbdkit reads it ("10ms", "1"). */
  delay?: { read?: string; write?: string; zero?: string; trim?: string; extents?: string; cache?: string; open?: string };
  /** Bandwidth limit in bits per second, e.g. "100M". */
  rate?: string;
  readOnly?: boolean;
  unixSocket?: string;
  verbose?: boolean;
}

const DELAY_KEYS: Readonly<Record<keyof NonNullable<FaultFrontOptions["delay"]>, string>> = {
  read: "rdelay",
  write: "wdelay",
  zero: "delay-zero",
  trim: "delay-trim",
  extents: "delay-extents",
  cache: "delay-cache",
  open: "delay-open",
};

/** The nbdkit options for a fault front (pure, for tests and for callers who add their own). */
export function faultFrontOptions(options: FaultFrontOptions): NbdkitOptions {
  const filters: string[] = [];
  const filterArgs: Record<string, string> = {};
  if (options.error !== undefined) {
    filters.push("error");
    const e = options.error;
    const prefixes = e.ops === undefined ? ["error"] : e.ops.map((op) => `error-${op}`);
    for (const p of prefixes) {
      filterArgs[p] = e.errno ?? "EIO";
      filterArgs[`${p}-rate`] = e.rate ?? "100%";
      if (e.file !== undefined) filterArgs[`${p}-file`] = e.file;
    }
  }
  if (options.delay !== undefined) {
    filters.push("delay");
    for (const [k, v] of Object.entries(options.delay)) {
      const key = DELAY_KEYS[k as keyof typeof DELAY_KEYS];
      if (v !== undefined) filterArgs[key] = v;
    }
  }
  if (options.rate !== undefined) {
    filters.push("rate");
    filterArgs.rate = options.rate;
  }
  return {
    plugin: "nbd",
    pluginArgs: { uri: options.upstream, ...(options.allExports === true ? { "dynamic-export": "true" } : {}) },
    filters,
    filterArgs,
    ...(options.readOnly !== undefined ? { readOnly: options.readOnly } : {}),
    ...(options.unixSocket !== undefined ? { unixSocket: options.unixSocket } : {}),
    ...(options.verbose !== undefined ? { verbose: options.verbose } : {}),
  };
}

export function startFaultFront(options: FaultFrontOptions): Promise<Nbdkit> {
  return Nbdkit.start(faultFrontOptions(options));
}
