/**
 * How a run ends: the images finished and the point record written (finish),
 * the point made visible (commit), and everything the run holds released
 * (cleanup), which runs on every exit path.
 *
 * Invariants:
 *  - the point appears atomically (repository commit protocol) or not at all;
 *    until it does, the previous point and its base S1 are untouched;
 *  - cleanup never throws, so it cannot hide the error that sent a run there;
 *    it resumes the VM if the run left it quiesced, closes readers, deletes
 *    exports before snapshots (an exported snapshot is still in use), deletes
 *    the snapshots newest first, and abandons an uncommitted point;
 *  - only after a commit is the previous point's base deleted: from then on
 *    this run's S1 is the base the next incremental diffs against;
 *  - each thing released is named in `run.released`, so a stopped run can say
 *    what it cleaned (the CLI prints it on stderr).
 */
import { SanboxError, errorMessage } from "../../../src/errors.js";
import type { SnapshotSet } from "../array-driver.js";
import { CATALOG_VERSION, type BackupPoint, type PointDisk, type SnapshotRef } from "../repository/catalog.js";
import type { RdmCopies, VmdkImage } from "./disk-copies.js";
import type { Discovery } from "./layout.js";
import { previousDisk } from "./previous-point.js";
import type { RunState } from "./run-state.js";
import { resumeVm, type AtT1, type AtT2 } from "./snapshot-cuts.js";
import { dropSnapshot } from "./snapshots.js";

/** Finishes the VMDK images and returns the point record, its disks in the layout's order. */
export async function finishPoint(run: RunState, found: Discovery, atT1: AtT1, atT2: AtT2, rdms: RdmCopies, vmdks: readonly VmdkImage[]): Promise<BackupPoint> {
  const byName = new Map<string, PointDisk>(rdms.disks.map((d) => [d.name, d]));
  for (const w of vmdks) {
    const index = await w.image.finish();
    await atT1.point.addDisk(w.disk.name, index);
    const stats = { bytesRead: w.stats.read, bytesWritten: w.stats.written, bytesReverted: w.stats.reverted };
    byName.set(w.disk.name, { name: w.disk.name, slot: w.disk.slot, kind: "vmdk", size: index.size, flatPath: w.disk.flatPath, s1Map: [...w.s1.map], stats });
  }
  const disks = atT1.layout.disks.map((d) => byName.get(d.name)).filter((d): d is PointDisk => d !== undefined);
  const parent = found.previous.parent;
  const isIncremental = parent !== undefined && disks.some((d) => previousDisk(parent, d) !== undefined);
  const s1 = atT1.s1;
  const record: BackupPoint = {
    version: CATALOG_VERSION,
    id: atT1.point.id,
    vm: run.vm,
    createdAt: new Date().toISOString(),
    kind: isIncremental ? "incremental" : "full",
    t1: atT1.t1,
    t2: atT2.t2,
    quiesceWindowMs: atT2.quiesceWindowMs,
    reverted: run.revert,
    datastoreLunId: found.dsLun.id,
    vmDir: atT1.layout.dir,
    base: { groupSnapshotId: s1.groupId, name: s1.name, snapshots: s1.members.map((m): SnapshotRef => ({ snapshotId: m.id, lunId: m.lunId, lunName: m.lunName })) },
    // The run's durations object itself, not a copy: point.json (written at commit) holds the phases up to
    // finish, and the record the run returns also those after.
    durationsMs: run.durations,
    disks,
  };
  if (isIncremental) record.parent = parent.id;
  if (found.workload !== undefined) record.workload = found.workload;
  return record;
}

/** Makes the point visible; from here it owns S1 (the next run's base), so cleanup leaves S1 alone. */
export async function commitPoint(run: RunState, atT1: AtT1, record: BackupPoint): Promise<void> {
  await atT1.point.commit(record);
  run.held.pending = undefined;
  const at = run.held.snapshots.indexOf(atT1.s1);
  if (at >= 0) run.held.snapshots.splice(at, 1);
}

/** What a commit superseded: the previous point's base, now replaced by this run's S1. */
export interface Superseded {
  readonly latest: BackupPoint | undefined;
  readonly s1: SnapshotSet;
}

/**
 * Releases everything the run holds (see the invariants); after a commit
 * (`superseded` given) also deletes the previous point's base. Returns the
 * names of the snapshots of earlier points it deleted.
 */
export async function cleanup(run: RunState, superseded?: Superseded): Promise<string[]> {
  const held = run.held;
  if (held.quiesced) {
    // Only when T2's own resume failed: try once more, since a VM left quiesced stalls its application.
    await resumeVm(run).catch((e: unknown) => run.log.error(`could not resume VM ${run.vm}: ${errorMessage(e)}`));
  }
  for (const r of held.readers.splice(0)) await r.close().catch(() => undefined);
  for (const id of held.exports.splice(0)) {
    await run.array.deleteExport(id).then(
      () => run.released.push(`export ${id}`),
      (e: unknown) => run.log.warn(`delete export ${id}: ${errorMessage(e)}`),
    );
  }
  for (const s of held.snapshots.splice(0).reverse()) {
    await dropSnapshot(run.array, s, run.log);
    run.released.push(`snapshot ${s.name}`);
  }
  const pending = held.pending;
  held.pending = undefined;
  if (pending !== undefined) {
    await pending.abandon().then(
      () => run.released.push(`unfinished point tmp/${pending.id}`),
      () => undefined,
    );
  }
  return superseded === undefined ? [] : deletePreviousBase(run, superseded);
}

async function deletePreviousBase(run: RunState, superseded: Superseded): Promise<string[]> {
  const old = superseded.latest?.base;
  if (old === undefined || old.name === superseded.s1.name) return [];
  try {
    await run.array.deleteSnapshot({ groupId: old.groupSnapshotId, members: old.snapshots.map((s) => ({ id: s.snapshotId })) });
    return [old.name];
  } catch (e: unknown) {
    if (!(e instanceof SanboxError && e.code === "NOT_FOUND")) run.log.warn(`could not delete the previous base ${old.name}: ${errorMessage(e)}`);
    return [];
  }
}
