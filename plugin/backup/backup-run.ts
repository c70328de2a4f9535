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
 */
import { Datastore } from "../../src/datastore/datastore.js";
import type { FileExtent } from "../../src/datastore/format.js";
import { readVm } from "../../src/datastore/vm-files.js";
import { CbtUnavailableError, FailedPreconditionError, SanboxError, errorMessage } from "../../src/errors.js";
import { normalize, totalLength, type Extent } from "../../src/extents/index.js";
import { silentLogger, type Logger } from "../../src/log.js";
import type { HypervisorApi } from "../../src/rpc/hypervisor-rpc.js";
import { collectExtents, type ArrayDriver, type SnapshotInfo, type SnapshotSet } from "./array-driver.js";
import { copyExtents, type CopyStats } from "./copy-extents.js";
import { ExportReader } from "./export-reader.js";
import { failpoint } from "./failpoint.js";
import type { BackupPoint, DiskIndex, PointDisk, SnapshotRef } from "./repository/catalog.js";
import type { ImageBuilder } from "./repository/image-builder.js";
import type { PendingPoint, Repository } from "./repository/repository.js";
import { planRevert, type FileState } from "./revert-plan.js";
import { withRetry } from "./retry.js";
import { layoutChanges, layoutFromInventory, layoutFromVmInfo, type DiskLayout, type VmLayout } from "./vm-layout.js";

export type HypervisorPort = Pick<HypervisorApi, "getVm" | "quiesceVm" | "resumeVm">;

export interface BackupRunOptions {
  vm: string;
  repo: Repository;
  array: ArrayDriver;
  hypervisor: HypervisorPort;
  /** Test-only: skip the revert (step 6). The point is then NOT time-consistent; the negative control uses it. */
  revert?: boolean;
  /** Force a full backup even when a base exists. */
  full?: boolean;
  quiesceTimeoutMs?: number;
  /** Times S1 is dropped and retaken when the layout changed under it (default 3). */
  layoutRetries?: number;
  parallel?: number;
  log?: Logger;
  /** Progress per disk in bytes. */
  onProgress?: (disk: string, phase: string, done: number, total: number) => void;
}

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

export const SNAPSHOT_PREFIX = "sanbox-backup-";

/**
 * Name prefix of every snapshot a backup of `vm` into one repository makes (what
 * leak cleanup looks for): another repository's bases for the same VM are not ours.
 */
export function snapshotPrefix(repoId: string, vm: string): string {
  return `${SNAPSHOT_PREFIX}${repoId}-${vm}-`;
}

interface VmdkWork {
  disk: DiskLayout & { flatPath: string };
  s1: FileState;
  s2?: FileState;
  image: ImageBuilder;
  stats: { read: number; written: number; reverted: number };
}

export async function runBackup(o: BackupRunOptions): Promise<BackupSummary> {
  const log = o.log ?? silentLogger;
  const revert = o.revert ?? true;
  const lock = await o.repo.lock(`vm-${o.vm}`);
  const created: SnapshotSet[] = [];
  const exports: string[] = [];
  const readers: ExportReader[] = [];
  const durations: Record<string, number> = {};
  let pending: PendingPoint | undefined;
  let step = Date.now();
  const mark = (name: string): void => {
    const now = Date.now();
    durations[name] = now - step;
    step = now;
  };
  const retry = <T>(what: string, fn: () => Promise<T>): Promise<T> => withRetry(what, fn, { log });
  const openSnapshot = async (snapshotId: string): Promise<string> => {
    const e = await retry("create export", () => o.array.exportSnapshot(snapshotId));
    exports.push(e.id);
    return e.uri;
  };
  try {
    const removedTmp = await o.repo.cleanup();
    if (removedTmp.length > 0) log.info(`removed ${removedTmp.length} unfinished point(s) of earlier runs: ${removedTmp.join(", ")}`);

    // ---- discover ---------------------------------------------------------------------
    const inv = await retry("get VM", () => o.hypervisor.getVm({ name: o.vm }));
    if (inv.workload?.quiesced === true) {
      // We hold the VM's lock, so no other backup is in its T2 window: a killed run left the VM quiesced.
      log.warn(`VM ${o.vm} is still quiesced by an earlier run that died; resuming it`);
      await retry("resume", () => o.hypervisor.resumeVm({ vm: o.vm }));
    }
    const before = layoutFromInventory(inv);
    const dsLunId = inv.datastoreLunId;
    const dsLun = await retry("find datastore LUN", () => o.array.findLun({ id: dsLunId }));
    const rdmLuns = new Map<string, { id: string; name: string; size: number }>();
    for (const d of before.disks) if (d.kind === "rdm") rdmLuns.set(d.name, await retry("find RDM LUN", () => o.array.findLun({ naa: d.naa ?? "" })));
    const prevAll = o.full === true ? undefined : await o.repo.latest(o.vm);
    const prev = prevAll?.reverted === true ? prevAll : undefined;
    if (prevAll !== undefined && prev === undefined) log.warn(`the latest point ${prevAll.id} was taken without the revert; taking a full backup`);
    const deleted = await deleteLeakedSnapshots(o.array, snapshotPrefix(o.repo.id, o.vm), [dsLun.id, ...[...rdmLuns.values()].map((l) => l.id)], prevAll ? [prevAll.base.groupSnapshotId, prevAll.base.name] : [], log);
    mark("discover");

    // ---- T1: group snapshot S1, layout re-read from S1 ------------------------------------
    const runId = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
    let s1: SnapshotSet | undefined;
    let layout: VmLayout | undefined;
    let t1 = "";
    const vmdks: VmdkWork[] = [];
    let s1DsUri = "";
    const retries = o.layoutRetries ?? 3;
    for (let attempt = 0; attempt <= retries && layout === undefined; attempt++) {
      const lunIds = [dsLun.id, ...[...rdmLuns.values()].map((l) => l.id)];
      const set = await retry("create S1", () => o.array.createSnapshot(`${snapshotPrefix(o.repo.id, o.vm)}${runId}-s1-${attempt}`, lunIds));
      created.push(set);
      t1 = new Date().toISOString();
      await failpoint("after-s1");
      const dsSnap = member(set, dsLun.id);
      s1DsUri = await openSnapshot(dsSnap.id);
      const client = await ExportReader.open(s1DsUri, { connections: 1, log });
      try {
        const ds = await Datastore.open(client.asBlockDevice(), { readOnly: true });
        const atS1 = layoutFromVmInfo(o.vm, await readVm(ds, before.dir));
        const changes = layoutChanges(before, atS1);
        if (changes.length > 0) {
          log.warn(`the VM's disks changed between discovery and T1 (${changes.join("; ")}); dropping S1 and starting over`);
          await dropSnapshot(o.array, set, log);
          created.pop();
          const again = await retry("get VM", () => o.hypervisor.getVm({ name: o.vm }));
          Object.assign(before, layoutFromInventory(again));
          rdmLuns.clear();
          for (const d of before.disks) if (d.kind === "rdm") rdmLuns.set(d.name, await retry("find RDM LUN", () => o.array.findLun({ naa: d.naa ?? "" })));
          continue;
        }
        layout = atS1;
        s1 = set;
        pending = await o.repo.begin(o.repo.newPointId(o.vm));
        for (const d of atS1.disks) {
          if (d.kind !== "vmdk" || d.flatPath === undefined) continue;
          const st = await ds.stat(d.flatPath);
          const map = await ds.extentMap(d.flatPath);
          const prevDisk = prev?.disks.find((x) => x.name === d.name && x.kind === "vmdk" && x.flatPath === d.flatPath && x.s1Map !== undefined);
          const base = prevDisk && prev ? await o.repo.index(prev, d.name) : undefined;
          vmdks.push({ disk: { ...d, flatPath: d.flatPath }, s1: { map, size: st.size }, image: pending.image(base), stats: { read: 0, written: 0, reverted: 0 } });
        }
      } finally {
        await client.close();
      }
    }
    if (layout === undefined || s1 === undefined || pending === undefined) throw new FailedPreconditionError(`the VM's disks kept changing during ${retries + 1} attempts to cut S1`);
    const s1Set = s1;
    const point = pending;
    mark("t1");

    // ---- RDMs from S1 ---------------------------------------------------------------------
    const summaries = new Map<string, DiskSummary>();
    let changedBytes = 0;
    let t1t2ChangedBytes = 0;
    const pointDisks = new Map<string, PointDisk>();
    for (const d of layout.disks) {
      if (d.kind !== "rdm") continue;
      const lun = rdmLuns.get(d.name);
      if (lun === undefined) throw new FailedPreconditionError(`RDM ${d.name}: no LUN`);
      const snap = member(s1Set, lun.id);
      const reader = await ExportReader.open(await openSnapshot(snap.id), { log });
      readers.push(reader);
      const prevDisk = prev?.disks.find((x) => x.name === d.name && x.kind === "rdm" && x.naa === d.naa);
      const prevSnap = prev?.base.snapshots.find((s) => s.lunId === lun.id);
      let base: DiskIndex | undefined;
      let extents = undefined as Awaited<ReturnType<typeof collectExtents>> | undefined;
      if (prevDisk && prev && prevSnap) {
        try {
          extents = await retry("changed blocks", () => collectExtents(o.array.changedExtents(prevSnap.snapshotId, snap.id)));
          base = await o.repo.index(prev, d.name);
          changedBytes += extents.reduce((n, e) => n + e.length, 0);
        } catch (e: unknown) {
          if (!(e instanceof CbtUnavailableError)) throw e;
          log.warn(`RDM ${d.name}: ${e.message}; reading it in full`);
        }
      }
      extents ??= await retry("allocated blocks", () => collectExtents(o.array.allocatedExtents(snap.id)));
      const image = point.image(base);
      const job = {
        copies: extents.filter((e) => e.flag === "DATA").map((e) => ({ srcOffset: e.offset, dstOffset: e.offset, length: e.length })),
        zeros: normalize(extents.filter((e) => e.flag === "ZERO")),
        size: snap.size,
      };
      const st = await copyExtents(reader, job, image, copyOpts(o, d.name, "rdm"));
      await point.addDisk(d.name, await image.finish());
      summaries.set(d.name, { name: d.name, kind: "rdm", size: snap.size, bytesRead: st.bytesRead, bytesWritten: st.bytesWritten + st.bytesZeroed, bytesReverted: 0 });
      pointDisks.set(d.name, { name: d.name, slot: d.slot, kind: "rdm", size: snap.size, naa: d.naa ?? "", lunId: lun.id, lunName: lun.name, stats: { bytesRead: st.bytesRead, bytesWritten: st.bytesWritten + st.bytesZeroed, bytesReverted: 0 } });
    }
    mark("rdm");

    // ---- T2: quiesce, S2 of the datastore, resume -------------------------------------------
    const q0 = Date.now();
    await retry("quiesce", () => o.hypervisor.quiesceVm({ vm: o.vm, timeoutMs: o.quiesceTimeoutMs ?? 10_000 }));
    let s2: SnapshotSet;
    let t2: string;
    try {
      await failpoint("in-quiesce");
      s2 = await retry("create S2", () => o.array.createSnapshot(`${snapshotPrefix(o.repo.id, o.vm)}${runId}-s2`, [dsLun.id]));
      created.push(s2);
      t2 = new Date().toISOString();
    } finally {
      await retry("resume", () => o.hypervisor.resumeVm({ vm: o.vm }));
    }
    const quiesceWindowMs = Date.now() - q0;
    await failpoint("after-s2");
    mark("t2");

    // ---- VMDKs from S2 --------------------------------------------------------------------
    const s2Snap = member(s2, dsLun.id);
    const s2Reader = await ExportReader.open(await openSnapshot(s2Snap.id), { log });
    readers.push(s2Reader);
    const ds2 = await Datastore.open(s2Reader.asBlockDevice(), { readOnly: true });
    for (const w of vmdks) w.s2 = { map: await ds2.extentMap(w.disk.flatPath), size: (await ds2.stat(w.disk.flatPath)).size };
    const prevDsSnap = prev?.base.snapshots.find((s) => s.lunId === dsLun.id);
    let sinceBase: Extent[] | undefined;
    if (prevDsSnap !== undefined && vmdks.some((w) => prevDiskOf(prev, w) !== undefined)) {
      try {
        sinceBase = lunRanges(await retry("changed blocks", () => collectExtents(o.array.changedExtents(prevDsSnap.snapshotId, s2Snap.id))));
        changedBytes += totalLength(sinceBase);
      } catch (e: unknown) {
        if (!(e instanceof CbtUnavailableError)) throw e;
        log.warn(`datastore: ${e.message}; reading the VMDKs in full`);
      }
    }
    for (const w of vmdks) {
      const prevDisk = prevDiskOf(prev, w);
      let from: FileState = { map: [], size: 0 };
      if (prevDisk?.s1Map !== undefined && sinceBase !== undefined) from = { map: prevDisk.s1Map, size: prevDisk.size };
      else if (w.image.size > 0) {
        // No usable diff: rebuild from an empty image.
        w.image = point.image(undefined);
      }
      const plan = planRevert(from, w.s2 ?? w.s1, sinceBase ?? []);
      const st = await copyExtents(s2Reader, plan, w.image, copyOpts(o, w.disk.name, "vmdk"));
      add(w.stats, st);
    }
    mark("vmdk");

    // ---- revert to T1 ---------------------------------------------------------------------
    if (revert) {
      const s1Reader = await ExportReader.open(s1DsUri, { log });
      readers.push(s1Reader);
      const s1Snap = member(s1Set, dsLun.id);
      let t1t2: Extent[];
      try {
        t1t2 = lunRanges(await retry("changed blocks", () => collectExtents(o.array.changedExtents(s1Snap.id, s2Snap.id))));
        t1t2ChangedBytes = totalLength(t1t2);
      } catch (e: unknown) {
        if (!(e instanceof CbtUnavailableError)) throw e;
        log.warn(`datastore: ${e.message}; reverting every mapped range`);
        t1t2 = [{ offset: 0, length: Math.max(s1Snap.size, s2Snap.size) }];
      }
      for (const w of vmdks) {
        const plan = planRevert(w.s2 ?? w.s1, w.s1, t1t2);
        const st = await copyExtents(s1Reader, plan, w.image, copyOpts(o, w.disk.name, "revert"));
        add(w.stats, st);
        w.stats.reverted = totalLength(plan.touched);
      }
    } else log.warn("--no-revert: the VMDK images hold T2 content; this point is NOT time-consistent (test use only)");
    mark("revert");

    for (const w of vmdks) {
      const index = await w.image.finish();
      await point.addDisk(w.disk.name, index);
      const stats = { bytesRead: w.stats.read, bytesWritten: w.stats.written, bytesReverted: w.stats.reverted };
      summaries.set(w.disk.name, { name: w.disk.name, kind: "vmdk", size: index.size, ...stats });
      pointDisks.set(w.disk.name, { name: w.disk.name, slot: w.disk.slot, kind: "vmdk", size: index.size, flatPath: w.disk.flatPath, s1Map: [...w.s1.map], stats });
    }

    // ---- commit -------------------------------------------------------------------------
    const disks = layout.disks.map((d) => pointDisks.get(d.name)).filter((d): d is PointDisk => d !== undefined);
    const isIncremental = prev !== undefined && disks.some((d) => (d.kind === "rdm" ? prev.disks.some((x) => x.name === d.name) : prevDiskOfName(prev, d.name) !== undefined));
    const base: BackupPoint["base"] = { groupSnapshotId: s1Set.groupId, name: s1Set.name, snapshots: s1Set.members.map((m): SnapshotRef => ({ snapshotId: m.id, lunId: m.lunId, lunName: m.lunName })) };
    const record: BackupPoint = {
      version: 1,
      id: point.id,
      vm: o.vm,
      createdAt: new Date().toISOString(),
      kind: isIncremental ? "incremental" : "full",
      t1,
      t2,
      quiesceWindowMs,
      reverted: revert,
      datastoreLunId: dsLun.id,
      vmDir: layout.dir,
      base,
      durationsMs: durations,
      disks,
    };
    if (isIncremental && prev) record.parent = prev.id;
    await failpoint("before-commit");
    mark("finish");
    await point.commit(record);
    pending = undefined;
    mark("commit");

    // ---- after the commit: S2 goes, S1 stays as the next base, the previous base goes ------------
    for (const r of readers.splice(0)) await r.close().catch(() => undefined);
    for (const id of exports.splice(0)) await o.array.deleteExport(id).catch((e: unknown) => log.warn(`delete export ${id}: ${errorMessage(e)}`));
    await dropSnapshot(o.array, s2, log);
    created.length = 0;
    if (prevAll !== undefined && prevAll.base.name !== s1Set.name) {
      const old = prevAll.base;
      try {
        await o.array.deleteSnapshot({ groupId: old.groupSnapshotId, members: old.snapshots.map((s) => ({ id: s.snapshotId })) });
        deleted.push(old.name);
      } catch (e: unknown) {
        if (!(e instanceof SanboxError && e.code === "NOT_FOUND")) log.warn(`could not delete the previous base ${old.name}: ${errorMessage(e)}`);
      }
    }
    mark("cleanup");
    const all = [...summaries.values()];
    return {
      point: record,
      kind: record.kind,
      disks: layout.disks.map((d) => summaries.get(d.name)).filter((d): d is DiskSummary => d !== undefined),
      t1,
      t2,
      quiesceWindowMs,
      durationsMs: durations,
      arrayBytesRead: all.reduce((n, d) => n + d.bytesRead, 0),
      changedBytes,
      t1t2ChangedBytes,
      deletedSnapshots: deleted,
    };
  } catch (e: unknown) {
    log.error(`backup of ${o.vm} failed: ${errorMessage(e)}; cleaning up`);
    for (const r of readers) await r.close().catch(() => undefined);
    for (const id of exports) await o.array.deleteExport(id).catch(() => undefined);
    for (const s of created.reverse()) await dropSnapshot(o.array, s, log);
    await pending?.abandon().catch(() => undefined);
    throw e;
  } finally {
    await lock.release();
  }

  function prevDiskOf(p: BackupPoint | undefined, w: VmdkWork): PointDisk | undefined {
    return p?.disks.find((x) => x.name === w.disk.name && x.kind === "vmdk" && x.flatPath === w.disk.flatPath && x.s1Map !== undefined);
  }
  function prevDiskOfName(p: BackupPoint, name: string): PointDisk | undefined {
    return p.disks.find((x) => x.name === name && x.kind === "vmdk" && x.s1Map !== undefined);
  }
}

function copyOpts(o: BackupRunOptions, disk: string, phase: string): { parallel?: number; onProgress?: (d: number, t: number) => void } {
  const out: { parallel?: number; onProgress?: (d: number, t: number) => void } = {};
  if (o.parallel !== undefined) out.parallel = o.parallel;
  const cb = o.onProgress;
  if (cb) out.onProgress = (d, t) => cb(disk, phase, d, t);
  return out;
}

function add(s: { read: number; written: number }, st: CopyStats): void {
  s.read += st.bytesRead;
  s.written += st.bytesWritten + st.bytesZeroed;
}

/** CBT extents as plain LUN ranges (DATA and ZERO alike: both are changes). */
function lunRanges(extents: readonly { offset: number; length: number }[]): Extent[] {
  return normalize(extents.map((e) => ({ offset: e.offset, length: e.length })));
}

function member(set: SnapshotSet, lunId: string): SnapshotInfo {
  const m = set.members.find((x) => x.lunId === lunId);
  if (m === undefined) throw new FailedPreconditionError(`snapshot ${set.name} has no member for LUN ${lunId}`);
  return m;
}

async function dropSnapshot(array: ArrayDriver, set: SnapshotSet, log: Logger): Promise<void> {
  try {
    await withRetry(`delete snapshot ${set.name}`, () => array.deleteSnapshot(set), { log });
  } catch (e: unknown) {
    if (!(e instanceof SanboxError && e.code === "NOT_FOUND")) log.error(`could not delete snapshot ${set.name}: ${errorMessage(e)}`);
  }
}

/**
 * Deletes the snapshots named `prefix…` (this repository's, of this VM) except the
 * base of the latest point: those were left by a run that was killed. Returns the names deleted.
 */
export async function deleteLeakedSnapshots(array: ArrayDriver, prefix: string, lunIds: readonly string[], keep: readonly string[], log: Logger): Promise<string[]> {
  const sets = new Map<string, { groupId: string; name: string; members: { id: string }[] }>();
  for (const lunId of lunIds) {
    for (const s of await array.listSnapshots(lunId)) {
      const name = s.groupId !== "" ? s.name.replace(/@[^@]*$/, "") : s.name;
      if (!name.startsWith(prefix)) continue;
      const key = s.groupId !== "" ? s.groupId : s.id;
      if (keep.includes(name) || (s.groupId !== "" && keep.includes(s.groupId))) continue;
      const have = sets.get(key);
      if (have) have.members.push({ id: s.id });
      else sets.set(key, { groupId: s.groupId, name, members: [{ id: s.id }] });
    }
  }
  const out: string[] = [];
  for (const s of sets.values()) {
    log.info(`deleting snapshot ${s.name} left behind by an earlier run`);
    await withRetry(`delete snapshot ${s.name}`, () => array.deleteSnapshot(s), { log });
    out.push(s.name);
  }
  return out;
}

export type { FileExtent };
