/**
 * A throwaway single-node Ceph cluster for the RBD tier, started and stopped by the
 * project's own script (scripts/ceph-cluster.mjs), exactly as a user or CI does.
 * A missing Ceph package fails with the install command; it never skips.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { execa } from "execa";

const SCRIPT = join(process.cwd(), "scripts", "ceph-cluster.mjs");
export const RBD_INSTALL = "node scripts/setup.mjs --rbd";

export interface CephCluster {
  dir: string;
  conf: string;
  pool: string;
  /** The PIDs the script recorded (mon, osd). */
  pids: number[];
  stop(): Promise<void>;
}

export function requireCeph(): void {
  for (const tool of ["ceph-mon", "ceph-osd", "ceph", "rbd"]) {
    if (!existsSync(`/usr/bin/${tool}`)) throw new Error(`${tool} is not installed: run "${RBD_INSTALL}" as root`);
  }
}

export function readPids(dir: string): number[] {
  const v: unknown = JSON.parse(readFileSync(join(dir, "pids.json"), "utf8"));
  if (!Array.isArray(v)) throw new Error("pids.json is not an array");
  return v.filter((p): p is number => typeof p === "number");
}

/** Running, not a zombie: the daemons are reparented to PID 1 here, which reaps them late. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

export async function startCephCluster(dir: string, opts: { pool?: string; store?: "bluestore" | "memstore"; timeoutSec?: number } = {}): Promise<CephCluster> {
  requireCeph();
  const pool = opts.pool ?? "rbd";
  const args = [SCRIPT, "start", dir, "--pool", pool, ...(opts.store ? ["--store", opts.store] : []), ...(opts.timeoutSec ? ["--timeout", String(opts.timeoutSec)] : [])];
  const r = await execa("node", args, { reject: false, timeout: 120_000 });
  if (r.exitCode !== 0) throw new Error(`ceph-cluster start failed (exit ${r.exitCode}): ${String(r.stderr)}`);
  const m = /^CEPH_CONF=(.+)$/m.exec(String(r.stdout));
  if (!m?.[1]) throw new Error(`ceph-cluster start printed no CEPH_CONF: ${String(r.stdout)}`);
  const conf = m[1];
  return {
    dir,
    conf,
    pool,
    pids: readPids(dir),
    stop: async () => {
      const s = await execa("node", [SCRIPT, "stop", dir], { reject: false, timeout: 30_000 });
      if (s.exitCode !== 0) throw new Error(`ceph-cluster stop failed (exit ${s.exitCode}): ${String(s.stderr)}`);
    },
  };
}

export function runClusterScript(args: readonly string[], timeoutMs = 120_000): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return execa("node", [SCRIPT, ...args], { reject: false, timeout: timeoutMs }).then((r) => ({
    exitCode: r.exitCode ?? -1,
    stdout: String(r.stdout),
    stderr: String(r.stderr),
  }));
}

/** `ceph-cluster.mjs full|kill-osd|start-osd` on the tier's cluster (the directory of its ceph.conf); throws with the script's stderr. */
export async function clusterFault(conf: string, args: readonly ["full", "on" | "off"] | readonly ["kill-osd"] | readonly ["start-osd"]): Promise<void> {
  const [cmd, ...rest] = args;
  const r = await runClusterScript([cmd, dirname(conf), ...rest], 90_000);
  if (r.exitCode !== 0) throw new Error(`ceph-cluster ${args.join(" ")} failed (exit ${r.exitCode}): ${r.stderr}`);
}
