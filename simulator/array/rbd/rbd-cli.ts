/**
 * The `rbd` and `ceph` command-line tools as an async API (npm has no librbd
 * binding; the CLIs answer JSON for every operation at 0.05–0.5 s a call).
 *
 * Every call runs under a deadline, so an unreachable monitor fails the call
 * (UnavailableError naming the monitor address) instead of hanging. librbd's
 * errno, printed as "(N) text" on stderr, becomes the catalogue's error:
 *   ENOENT → NotFoundError, except a missing *pool*, which is NoSpaceError (the
 *            issue's rule: a LUN cannot be placed, so there is no space for it);
 *   ENOSPC, EDQUOT → NoSpaceError;  EEXIST → AlreadyExistsError;
 *   EBUSY, ENOTEMPTY → FailedPreconditionError;  EINVAL → InvalidArgumentError;
 *   anything else → IoError.
 */
import { execa } from "execa";
import { readFileSync } from "node:fs";
import {
  AlreadyExistsError,
  CancelledError,
  FailedPreconditionError,
  InvalidArgumentError,
  IoError,
  NoSpaceError,
  NotFoundError,
  SanboxError,
  ToolMissingError,
  UnavailableError,
} from "../../../src/errors.js";

export const RBD_INSTALL_PACKAGES = "ceph-common qemu-block-extra";

export interface RbdCliOptions {
  conf: string;
  pool: string;
  /** Per-call deadline (default 30 s). */
  timeoutMs?: number;
}

/** The monitor address(es) a ceph.conf names, for error messages. */
export function monitorAddress(conf: string): string {
  try {
    const m = /^\s*mon[ _]host\s*=\s*(.+)$/m.exec(readFileSync(conf, "utf8"));
    return m?.[1]?.trim() ?? "(no mon host in the conf)";
  } catch {
    return `(cannot read ${conf})`;
  }
}

export function rbdError(stderr: string, what: string): SanboxError {
  // The last "(errno) text" is librbd's answer; earlier lines may quote other codes.
  const all = [...stderr.matchAll(/\((\d+)\) ([^\n]*)/g)];
  const m = all[all.length - 1];
  const errno = m?.[1] !== undefined ? Number(m[1]) : undefined;
  const line = stderr.trim().split("\n").filter((l) => l !== "").slice(-1)[0] ?? "";
  const msg = `${what}: ${line}`;
  if (errno === 2 && /error opening pool|pool .* does not exist|error opening ioctx/i.test(stderr)) return new NoSpaceError(`${what}: the pool does not exist (${line})`);
  if (errno === 2) return new NotFoundError(msg);
  if (errno === 28 || errno === 122) return new NoSpaceError(msg);
  if (errno === 17) return new AlreadyExistsError(msg);
  if (errno === 16 || errno === 39) return new FailedPreconditionError(msg);
  if (errno === 22) return new InvalidArgumentError(msg);
  return new IoError(msg);
}

export interface RunOptions {
  timeoutMs?: number;
  /** False for the OSD-map read itself; otherwise a blocked call is classified by the probe (ceph-stall.ts). */
  probe?: boolean;
  /** Kills the child (a closing daemon's background pass). */
  signal?: AbortSignal;
}

/** Classifies a call that has not returned yet (ceph-stall.ts boundCall), given its child to kill. */
export type CallBound = <T>(what: string, work: Promise<T>, timeoutMs: number, onEnd: () => void) => Promise<T>;

export class RbdCli {
  readonly conf: string;
  readonly pool: string;
  private readonly timeoutMs: number;
  private bound: CallBound | undefined;

  constructor(opts: RbdCliOptions) {
    this.conf = opts.conf;
    this.pool = opts.pool;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /** From now on, calls that may block on Ceph run under `bound` (set once the backend has its health probe). */
  setBound(bound: CallBound): void {
    this.bound = bound;
  }

  /** `pool/image` or `pool/image@snap`. */
  spec(image: string, snap?: string): string {
    return snap === undefined ? `${this.pool}/${image}` : `${this.pool}/${image}@${snap}`;
  }

  async run(tool: "rbd" | "ceph", args: readonly string[], what: string, opts: RunOptions = {}): Promise<string> {
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const child = execa(tool, ["-c", this.conf, ...args], {
      reject: false,
      timeout: timeoutMs,
      env: { CEPH_ARGS: "" },
      forceKillAfterDelay: 1_000,
      // A cancelled call is a read-only measurement: SIGKILL, as `rbd` takes seconds to act on SIGTERM.
      ...(opts.signal !== undefined ? { cancelSignal: opts.signal, killSignal: "SIGKILL" as const } : {}),
    });
    const bound = opts.probe === false ? undefined : this.bound;
    const r = bound ? await bound(what, child, timeoutMs, () => child.kill("SIGKILL")) : await child;
    if (r.failed && (r as { code?: unknown }).code === "ENOENT") throw new ToolMissingError(tool, RBD_INSTALL_PACKAGES);
    if (r.isCanceled) throw new CancelledError(`${what}: cancelled`);
    if (r.timedOut) throw new UnavailableError(`${what}: Ceph did not answer within ${timeoutMs} ms (monitor ${monitorAddress(this.conf)})`);
    if (r.exitCode !== 0) throw rbdError(String(r.stderr), what);
    return String(r.stdout);
  }

  async json(tool: "rbd" | "ceph", args: readonly string[], what: string, opts: RunOptions = {}): Promise<unknown> {
    const out = await this.run(tool, [...args, "--format", "json"], what, opts);
    try {
      return out.trim() === "" ? null : (JSON.parse(out) as unknown);
    } catch {
      throw new IoError(`${what}: ${tool} printed no JSON`);
    }
  }
}
