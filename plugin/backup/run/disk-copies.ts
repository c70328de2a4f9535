/**
 * The phases that move data, all through copyExtents: the RDMs from S1, the
 * VMDK flat files from S2, and the revert of the VMDK images to T1 from S1.
 *
 * Invariants:
 *  - an incremental reads only what CBT (since the parent's S1) reports
 *    changed, and builds over the parent's image of the *same* disk
 *    (previousDisk); when the array cannot answer the diff
 *    (CbtUnavailableError) the disk is read in full and its image rebuilt from
 *    empty, never patched from a guess;
 *  - after backupVmdks each VMDK image holds its file as at T2; after
 *    revertToT1 as at T1, the instant the RDMs were cut. The revert reads only
 *    the ranges CBT(S1, S2) and the two extent maps say differ;
 *  - each VMDK's `stats` is what every phase added: bytes read and written, and
 *    the bytes the revert rewrote.
 */
import { Datastore } from "../../../src/datastore/datastore.js";
import { CbtUnavailableError, FailedPreconditionError } from "../../../src/errors.js";
import { normalize, totalLength, type Extent } from "../../../src/extents/index.js";
import { collect } from "../../../src/rpc/client.js";
import type { TypedExtent } from "../array-driver.js";
import { copyExtents, type CopyStats } from "../copy-extents.js";
import type { PointDisk } from "../repository/catalog.js";
import type { DiskMap } from "../repository/disk-map.js";
import { planRevert, type FileState } from "../revert-plan.js";
import type { Discovery } from "./layout.js";
import { previousDisk, previousSnapshot } from "./previous-point.js";
import { copyOptions, openHeldReader, openSnapshotExport, retry, type RunState } from "./run-state.js";
import type { AtT1, AtT2, VmdkAtS1 } from "./snapshot-cuts.js";
import { member } from "./snapshots.js";

export interface RdmCopies {
  /** The RDMs' records for the point, finished and added to it. */
  readonly disks: PointDisk[];
  /** Bytes CBT reported changed on the RDM LUNs since the parent's S1. */
  readonly changedBytes: number;
}

/** A VMDK image being built: its file at S1 and at S2, and the bytes each phase moved. */
export interface VmdkImage extends VmdkAtS1 {
  readonly s2: FileState;
  readonly stats: { read: number; written: number; reverted: number };
}

export interface VmdkCopies {
  readonly images: VmdkImage[];
  /** Bytes CBT reported changed on the datastore LUN from the parent's S1 to S2. */
  readonly changedBytes: number;
}

export async function backupRdms(run: RunState, found: Discovery, atT1: AtT1): Promise<RdmCopies> {
  const parent = found.previous.parent;
  const disks: PointDisk[] = [];
  let changedBytes = 0;
  for (const d of atT1.layout.disks) {
    if (d.kind !== "rdm") continue;
    const lun = atT1.rdmLuns.get(d.name);
    if (lun === undefined) throw new FailedPreconditionError(`RDM ${d.name}: no LUN`);
    const snap = member(atT1.s1, lun.id);
    const reader = await openHeldReader(run, await openSnapshotExport(run, snap.id));
    const prevSnap = previousSnapshot(parent, lun.id);
    let base: DiskMap | undefined;
    let extents: TypedExtent[] | undefined;
    if (parent !== undefined && previousDisk(parent, d) !== undefined && prevSnap !== undefined) {
      try {
        extents = await retry(run, "changed blocks", () => collect(run.array.changedExtents(prevSnap.snapshotId, snap.id)));
        base = await run.repo.index(parent, d.name);
        changedBytes += extents.reduce((n, e) => n + e.length, 0);
      } catch (e: unknown) {
        if (!(e instanceof CbtUnavailableError)) throw e;
        run.log.warn(`RDM ${d.name}: ${e.message}; reading it in full`);
      }
    }
    extents ??= await retry(run, "allocated blocks", () => collect(run.array.allocatedExtents(snap.id)));
    const image = atT1.point.image(base);
    const job = {
      copies: extents.filter((e) => e.flag === "DATA").map((e) => ({ srcOffset: e.offset, dstOffset: e.offset, length: e.length })),
      zeros: normalize(extents.filter((e) => e.flag === "ZERO")),
      size: snap.size,
    };
    const st = await copyExtents(reader, job, image, copyOptions(run, d.name, "rdm"));
    await atT1.point.addDisk(d.name, await image.finish());
    const stats = { bytesRead: st.bytesRead, bytesWritten: st.bytesWritten + st.bytesZeroed, bytesReverted: 0 };
    disks.push({ name: d.name, slot: d.slot, kind: "rdm", size: snap.size, naa: d.naa ?? "", lunId: lun.id, lunName: lun.name, stats });
  }
  return { disks, changedBytes };
}

export async function backupVmdks(run: RunState, found: Discovery, atT1: AtT1, atT2: AtT2): Promise<VmdkCopies> {
  const parent = found.previous.parent;
  const s2Snap = member(atT2.s2, found.dsLun.id);
  const reader = await openHeldReader(run, await openSnapshotExport(run, s2Snap.id));
  const ds2 = await Datastore.open(reader.asBlockDevice(), { readOnly: true });
  const atS2: { vmdk: VmdkAtS1; s2: FileState }[] = [];
  for (const vmdk of atT1.vmdks) atS2.push({ vmdk, s2: { map: await ds2.extentMap(vmdk.disk.flatPath), size: (await ds2.stat(vmdk.disk.flatPath)).size } });
  const prevDsSnap = previousSnapshot(parent, found.dsLun.id);
  let sinceBase: Extent[] | undefined;
  let changedBytes = 0;
  if (prevDsSnap !== undefined && atT1.vmdks.some((w) => previousDisk(parent, w.disk) !== undefined)) {
    try {
      sinceBase = lunRanges(await retry(run, "changed blocks", () => collect(run.array.changedExtents(prevDsSnap.snapshotId, s2Snap.id))));
      changedBytes += totalLength(sinceBase);
    } catch (e: unknown) {
      if (!(e instanceof CbtUnavailableError)) throw e;
      run.log.warn(`datastore: ${e.message}; reading the VMDKs in full`);
    }
  }
  const images: VmdkImage[] = [];
  for (const { vmdk, s2 } of atS2) {
    const prevDisk = previousDisk(parent, vmdk.disk);
    let from: FileState = { map: [], size: 0 };
    let image = vmdk.image;
    if (prevDisk?.s1Map !== undefined && sinceBase !== undefined) from = { map: prevDisk.s1Map, size: prevDisk.size };
    else if (image.size > 0) {
      // No usable diff: rebuild from an empty image.
      image = atT1.point.image(undefined);
    }
    const plan = planRevert(from, s2, sinceBase ?? []);
    const st = await copyExtents(reader, plan, image, copyOptions(run, vmdk.disk.name, "vmdk"));
    const stats = { read: 0, written: 0, reverted: 0 };
    addCopied(stats, st);
    images.push({ ...vmdk, image, s2, stats });
  }
  return { images, changedBytes };
}

/** Brings every VMDK image from T2 back to T1; returns the bytes CBT reported changed between S1 and S2. */
export async function revertToT1(run: RunState, found: Discovery, atT1: AtT1, atT2: AtT2, images: readonly VmdkImage[]): Promise<number> {
  if (!run.revert) {
    run.log.warn("--no-revert: the VMDK images hold T2 content; this point is NOT time-consistent (test use only)");
    return 0;
  }
  const reader = await openHeldReader(run, atT1.s1DatastoreUri);
  const s1Snap = member(atT1.s1, found.dsLun.id);
  const s2Snap = member(atT2.s2, found.dsLun.id);
  let t1t2: Extent[];
  let t1t2ChangedBytes = 0;
  try {
    t1t2 = lunRanges(await retry(run, "changed blocks", () => collect(run.array.changedExtents(s1Snap.id, s2Snap.id))));
    t1t2ChangedBytes = totalLength(t1t2);
  } catch (e: unknown) {
    if (!(e instanceof CbtUnavailableError)) throw e;
    run.log.warn(`datastore: ${e.message}; reverting every mapped range`);
    t1t2 = [{ offset: 0, length: Math.max(s1Snap.size, s2Snap.size) }];
  }
  for (const w of images) {
    const plan = planRevert(w.s2, w.s1, t1t2);
    const st = await copyExtents(reader, plan, w.image, copyOptions(run, w.disk.name, "revert"));
    addCopied(w.stats, st);
    w.stats.reverted = totalLength(plan.touched);
  }
  return t1t2ChangedBytes;
}

function addCopied(stats: { read: number; written: number }, st: CopyStats): void {
  stats.read += st.bytesRead;
  stats.written += st.bytesWritten + st.bytesZeroed;
}

/** CBT extents as plain LUN ranges (DATA and ZERO alike: both are changes). */
function lunRanges(extents: readonly { offset: number; length: number }[]): Extent[] {
  return normalize(extents.map((e) => ({ offset: e.offset, length: e.length })));
}
