/**
 * The previous point: what a backup run builds on, and the one lookup of "this
 * disk (or LUN) in the previous point" that every phase uses.
 *
 * Invariants:
 *  - `latest` is the repository's newest point of the VM, --full or not. Its
 *    S1 stays on the array until this run commits, because until then it is
 *    still the base the next run needs (a --full run that is killed or stopped
 *    must leave the next incremental its base); after the commit it is deleted.
 *  - With --full there is no `parent`: the run reads everything.
 *  - `parent` is `latest` only if it was taken with the revert: an unreverted
 *    point holds T2 content for its VMDKs, so building on it would carry that
 *    inconsistency forward. Without a parent the run is a full backup.
 *  - A disk has a previous counterpart only if it is the same disk: same name
 *    and kind, and for a VMDK the same flat file with its S1 extent map
 *    recorded (what the incremental diffs against), for an RDM the same LUN by
 *    NAA id. A disk renamed onto another file or LUN starts from empty.
 *  - A damaged latest point (its maps unreadable, or chunks with no good copy)
 *    is no parent either: its base is kept, but the run reads in full, which
 *    also stores good copies of the damaged chunks (healing).
 */
import type { Logger } from "../../../src/log.js";
import type { BackupPoint, PointDisk, SnapshotRef } from "../repository/catalog.js";
import type { Repository } from "../repository/repository.js";
import type { DiskLayout } from "../vm-layout.js";

export interface PreviousPoint {
  /** The newest point of the VM: its base is kept until this run commits. */
  readonly latest: BackupPoint | undefined;
  /** The point to build on: `latest` if it was reverted, else undefined (a full backup). */
  readonly parent: BackupPoint | undefined;
}

/** The previous point of `vm` in `repo`; `full` builds on nothing but still keeps the latest base until the commit. */
export async function findPreviousPoint(repo: Pick<Repository, "latest"> & Partial<Pick<Repository, "newestRecord">>, vm: string, full: boolean, log: Logger): Promise<PreviousPoint> {
  let latest: BackupPoint | undefined;
  let damage: string | undefined;
  if (repo.newestRecord !== undefined) {
    const r = await repo.newestRecord(vm);
    latest = r?.point;
    damage = r?.damage;
  } else latest = await repo.latest(vm);
  if (full) return { latest, parent: undefined };
  if (latest !== undefined && damage !== undefined) {
    log.warn(`the latest point ${latest.id} is damaged (${damage}); taking a full backup`);
    return { latest, parent: undefined };
  }
  const parent = latest?.reverted === true ? latest : undefined;
  if (latest !== undefined && parent === undefined) log.warn(`the latest point ${latest.id} was taken without the revert; taking a full backup`);
  return { latest, parent };
}

/** `disk` as the parent point recorded it, if it is the same disk (see the invariants above). */
export function previousDisk(parent: BackupPoint | undefined, disk: Pick<DiskLayout, "name" | "kind" | "flatPath" | "naa">): PointDisk | undefined {
  return parent?.disks.find((x) => {
    if (x.name !== disk.name || x.kind !== disk.kind) return false;
    return disk.kind === "vmdk" ? x.flatPath === disk.flatPath && x.s1Map !== undefined : x.naa === disk.naa;
  });
}

/** The parent's S1 member snapshot of `lunId`: the base of that LUN's CBT diff. */
export function previousSnapshot(parent: BackupPoint | undefined, lunId: string): SnapshotRef | undefined {
  return parent?.base.snapshots.find((s) => s.lunId === lunId);
}
