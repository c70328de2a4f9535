/**
 * The repository's catalog record: a backup point (`points/<id>/point.json`,
 * format version 2; its disks' maps are `points/<id>/<disk>.map`, disk-map.ts).
 * Everything read back from disk is `unknown` until it passes the narrowing
 * parsers here, so a damaged file is a CorruptError naming the file, never a
 * crash later.
 *
 *   point.json   { version: 2, id, vm, createdAt, kind, parent?, t1, t2, quiesceWindowMs,
 *                  reverted, workload?, datastoreLunId, vmDir, base, durationsMs, disks[] }
 *
 * Every point is a full synthetic image: its maps list every stored chunk of
 * every disk; chunks shared with earlier points are simply referenced again.
 */
import type { FileExtent } from "../../../src/datastore/format.js";
import { CorruptError, quote } from "../../../src/errors.js";

export const CATALOG_VERSION = 2;

export interface DiskStats {
  /** Bytes read from the array for this disk (step 3 or 5 plus the revert). */
  bytesRead: number;
  /** Bytes written into the image (data and zeros). */
  bytesWritten: number;
  /** Bytes the revert rewrote to T1 content (VMDKs). */
  bytesReverted: number;
}

export interface PointDisk {
  /** Descriptor base name, e.g. "vm1_1": what `--disk` names. */
  name: string;
  slot: string;
  kind: "vmdk" | "rdm";
  size: number;
  /** VMDK: the flat file's datastore path. */
  flatPath?: string;
  /** RDM: the LUN's NAA id and name. */
  naa?: string;
  lunId?: string;
  lunName?: string;
  /** VMDK: the flat file's extent map at S1 (what the next incremental diffs against). */
  s1Map?: FileExtent[];
  stats: DiskStats;
}

export interface SnapshotRef {
  snapshotId: string;
  lunId: string;
  lunName: string;
}

export interface BackupPoint {
  version: number;
  id: string;
  vm: string;
  createdAt: string;
  kind: "full" | "incremental";
  /** The point this one was built on (incrementals). */
  parent?: string;
  /** T1: the group snapshot S1 was cut (ISO time); T2: S2 was cut. */
  t1: string;
  t2: string;
  quiesceWindowMs: number;
  /** False only for test runs with --no-revert: such a point is NOT time-consistent. */
  reverted: boolean;
  /** The workload the hypervisor reported running in the VM at discovery ("dependent": the oracle applies). */
  workload?: string;
  datastoreLunId: string;
  vmDir: string;
  /** S1, kept on the array as the base of the next incremental. */
  base: { groupSnapshotId: string; name: string; snapshots: SnapshotRef[] };
  durationsMs: Record<string, number>;
  disks: PointDisk[];
}

type Obj = Record<string, unknown>;

function obj(v: unknown, what: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new CorruptError(`${what}: expected an object`);
  return v as Obj;
}
function str(o: Obj, k: string, what: string): string {
  const v = o[k];
  if (typeof v !== "string") throw new CorruptError(`${what}: ${quote(k)} must be a string`);
  return v;
}
function optStr(o: Obj, k: string, what: string): string | undefined {
  return o[k] === undefined ? undefined : str(o, k, what);
}
function num(o: Obj, k: string, what: string): number {
  const v = o[k];
  if (typeof v !== "number" || !Number.isFinite(v)) throw new CorruptError(`${what}: ${quote(k)} must be a number`);
  return v;
}
function arr(o: Obj, k: string, what: string): unknown[] {
  const v = o[k];
  if (!Array.isArray(v)) throw new CorruptError(`${what}: ${quote(k)} must be an array`);
  return v;
}

function parseMap(v: unknown, what: string): FileExtent[] {
  if (!Array.isArray(v)) throw new CorruptError(`${what}: s1Map must be an array`);
  return v.map((x) => {
    const o = obj(x, what);
    return { fileOffset: num(o, "fileOffset", what), lunOffset: num(o, "lunOffset", what), length: num(o, "length", what) };
  });
}

function parseDisk(v: unknown, what: string): PointDisk {
  const o = obj(v, what);
  const kind = str(o, "kind", what);
  if (kind !== "vmdk" && kind !== "rdm") throw new CorruptError(`${what}: unknown disk kind ${quote(kind)}`);
  const s = obj(o["stats"], `${what} stats`);
  const d: PointDisk = {
    name: str(o, "name", what),
    slot: str(o, "slot", what),
    kind,
    size: num(o, "size", what),
    stats: { bytesRead: num(s, "bytesRead", what), bytesWritten: num(s, "bytesWritten", what), bytesReverted: num(s, "bytesReverted", what) },
  };
  for (const k of ["flatPath", "naa", "lunId", "lunName"] as const) {
    const x = optStr(o, k, what);
    if (x !== undefined) d[k] = x;
  }
  if (o["s1Map"] !== undefined) d.s1Map = parseMap(o["s1Map"], what);
  return d;
}

export function parsePoint(v: unknown, what: string): BackupPoint {
  const o = obj(v, what);
  const version = num(o, "version", what);
  if (version !== CATALOG_VERSION) throw new CorruptError(`${what}: point format version ${version}, expected ${CATALOG_VERSION}`);
  const kind = str(o, "kind", what);
  if (kind !== "full" && kind !== "incremental") throw new CorruptError(`${what}: unknown point kind ${quote(kind)}`);
  const b = obj(o["base"], `${what} base`);
  const durations: Record<string, number> = {};
  for (const [k, x] of Object.entries(obj(o["durationsMs"], `${what} durationsMs`))) if (typeof x === "number") durations[k] = x;
  const reverted = o["reverted"];
  if (typeof reverted !== "boolean") throw new CorruptError(`${what}: "reverted" must be a boolean`);
  const p: BackupPoint = {
    version: CATALOG_VERSION,
    id: str(o, "id", what),
    vm: str(o, "vm", what),
    createdAt: str(o, "createdAt", what),
    kind,
    t1: str(o, "t1", what),
    t2: str(o, "t2", what),
    quiesceWindowMs: num(o, "quiesceWindowMs", what),
    reverted,
    datastoreLunId: str(o, "datastoreLunId", what),
    vmDir: str(o, "vmDir", what),
    base: {
      groupSnapshotId: str(b, "groupSnapshotId", what),
      name: str(b, "name", what),
      snapshots: arr(b, "snapshots", what).map((x) => {
        const s = obj(x, what);
        return { snapshotId: str(s, "snapshotId", what), lunId: str(s, "lunId", what), lunName: str(s, "lunName", what) };
      }),
    },
    durationsMs: durations,
    disks: arr(o, "disks", what).map((d, i) => parseDisk(d, `${what} disk ${i}`)),
  };
  const parent = optStr(o, "parent", what);
  if (parent !== undefined) p.parent = parent;
  const workload = optStr(o, "workload", what);
  if (workload !== undefined) p.workload = workload;
  return p;
}
