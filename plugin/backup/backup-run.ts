/**
 * `backup run`: the method of DESIGN.md, one time-consistent backup point of a
 * VM whose disks live on a datastore LUN (VMDK flat files) and on raw LUNs
 * (physical RDMs), read over NBD from array snapshots.
 *
 *   discover   hypervisor inventory → datastore LUN, VM dir, RDM NAA ids → LUNs
 *   T1         group snapshot S1 = {datastore LUN, every RDM LUN}; re-read the
 *              layout from S1 (changed since discovery: drop S1, start over)
 *   rdm        each RDM from S1: allocated extents (full) or CBT since the
 *              previous point's S1 (incremental)
 *   T2         quiesce → snapshot the datastore alone (S2) → resume
 *   vmdk       each flat file from S2: planRevert(previous S1 → S2), i.e. the
 *              file ranges whose LUN extents changed since the previous S1 or
 *              whose mapping changed (full: every mapped range)
 *   revert     planRevert(S2 → S1) with CBT(S1, S2): the VMDK images go back
 *              to T1 and so match the RDMs cut at T1
 *   commit     the point appears atomically; S2 is deleted; S1 stays as the
 *              next base and the previous base is deleted
 *
 * Every image is built over the previous point's image (incremental forever),
 * and every byte moved goes through copyExtents. On any failure the snapshots
 * this run made are deleted (exports first), the pending point is dropped,
 * and the error propagates. Snapshots a killed run left behind are found by
 * their name prefix and deleted at the start of the next run of that VM.
 *
 * runBackup is only the sequence: each step above is a phase function in
 * run/ (layout.ts, snapshot-cuts.ts, disk-copies.ts, end-of-run.ts) over one
 * RunState (run/run-state.ts), which holds what cleanup must release. A
 * phase's products are its return value and are handed to later phases
 * explicitly. The test-only stops "after-s1", "after-s2" and "before-commit"
 * (src/failpoints.ts) are the boundaries after t1, t2 and finish.
 *
 * A stop (options.signal aborted, at SIGINT/SIGTERM) is a failure like any
 * other as far as cleanup goes: the run's snapshots, exports and unfinished
 * point go, the lock is released, and what was released is logged (warn, so
 * it shows at the CLI's default level) before the InterruptedError propagates.
 */
import { CancelledError, errorMessage } from "../../src/errors.js";
import type { BackupPoint, PointDisk } from "./repository/catalog.js";
import { backupRdms, backupVmdks, revertToT1 } from "./run/disk-copies.js";
import { cleanup, commitPoint, finishPoint } from "./run/end-of-run.js";
import { discover } from "./run/layout.js";
import { createRunState, runPhase, type BackupRunOptions, type HypervisorPort } from "./run/run-state.js";
import { cutT1, cutT2 } from "./run/snapshot-cuts.js";

export type { BackupRunOptions, HypervisorPort };
export { SNAPSHOT_PREFIX, deleteLeakedSnapshots, snapshotPrefix } from "./run/snapshots.js";

export interface DiskSummary {
  name: string;
  kind: "vmdk" | "rdm";
  size: number;
  bytesRead: number;
  bytesWritten: number;
  bytesReverted: number;
}

export interface BackupSummary {
  point: BackupPoint;
  kind: "full" | "incremental";
  disks: DiskSummary[];
  t1: string;
  t2: string;
  quiesceWindowMs: number;
  durationsMs: Record<string, number>;
  /** Bytes read from the array over NBD, all disks and steps. */
  arrayBytesRead: number;
  /** Bytes the array's CBT reported changed since the previous point's S1 (RDMs: to S1; datastore: to S2); 0 for a full backup. */
  changedBytes: number;
  /** Bytes the array's CBT reported changed on the datastore LUN between S1 and S2 (what the revert works from). */
  t1t2ChangedBytes: number;
  /** Snapshots of earlier runs deleted (leaked by a crash, or superseded bases). */
  deletedSnapshots: string[];
}

export async function runBackup(options: BackupRunOptions): Promise<BackupSummary> {
  const run = createRunState(options);
  const lock = await options.repo.lock(`vm-${options.vm}`);
  try {
    const found = await runPhase(run, "discover", () => discover(run));
    const atT1 = await runPhase(run, "t1", () => cutT1(run, found));
    const rdms = await runPhase(run, "rdm", () => backupRdms(run, found, atT1));
    const atT2 = await runPhase(run, "t2", () => cutT2(run, found.dsLun));
    const vmdks = await runPhase(run, "vmdk", () => backupVmdks(run, found, atT1, atT2));
    const t1t2ChangedBytes = await runPhase(run, "revert", () => revertToT1(run, found, atT1, atT2, vmdks.images));
    const record = await runPhase(run, "finish", () => finishPoint(run, found, atT1, atT2, rdms, vmdks.images));
    await runPhase(run, "commit", () => commitPoint(run, atT1, record));
    const superseded = await runPhase(run, "cleanup", () => cleanup(run, { latest: found.previous.latest, s1: atT1.s1 }));
    const disks = record.disks.map(diskSummary);
    const summary: BackupSummary = {
      point: record,
      kind: record.kind,
      disks,
      t1: atT1.t1,
      t2: atT2.t2,
      quiesceWindowMs: atT2.quiesceWindowMs,
      durationsMs: run.durations,
      arrayBytesRead: disks.reduce((n, d) => n + d.bytesRead, 0),
      changedBytes: rdms.changedBytes + vmdks.changedBytes,
      t1t2ChangedBytes,
      deletedSnapshots: [...found.deleted, ...superseded],
    };
    return summary;
  } catch (e: unknown) {
    const stopped = e instanceof CancelledError || run.signal?.aborted === true;
    if (stopped) run.log.warn(`backup of ${run.vm} ${errorMessage(run.signal?.reason ?? e)}; cleaning up`);
    else run.log.error(`backup of ${run.vm} failed: ${errorMessage(e)}; cleaning up`);
    await cleanup(run);
    if (stopped) run.log.warn(`cleaned up: ${[...run.released, `lock vm-${run.vm}`].join(", ")}`);
    throw run.signal?.aborted === true ? run.signal.reason : e;
  } finally {
    await lock.release();
  }
}

function diskSummary(d: PointDisk): DiskSummary {
  return { name: d.name, kind: d.kind, size: d.size, ...d.stats };
}
