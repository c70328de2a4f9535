/**
 * ArrayStore: the array's block store. Thin LUNs, redirect-on-write snapshots,
 * atomic group snapshots, revert, clone, CBT, space accounting, persistence.
 *
 * Open with `ArrayStore.open(dir, {capacityBytes?, strict?})`. Do I/O through
 * `openVolume({lun} | {snapshot})` (volume.ts). Everything else is here.
 *
 * Management operations run one at a time (a mutex), fence the I/O of the LUNs
 * they change (io-gate.ts), commit one LMDB transaction and make it durable
 * (data files fdatasync'd first, then LMDB synced) before they return. Snapshot
 * and group-snapshot cuts are O(1) in LUN size and in snapshot count: a cut is a
 * catalogue record plus `line.epoch++` (see records.ts, store-state.ts).
 *
 * `strict: true` runs the invariant checker after every management operation and
 * throws CorruptError on the first violation (tests use it).
 */
import { mkdir } from "node:fs/promises";
import { BufferPool } from "../../src/nbd/buffer-pool.js";
import {
  AlreadyExistsError,
  CorruptError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  quote,
} from "../../src/errors.js";
import { fromBlocks } from "../../src/extents/index.js";
import type {
  AllocatedExtentsResult,
  ArrayBackend,
  BackendCapabilities,
  CbtTarget,
  ChangedExtentsResult,
  GroupSnapshotInfo,
  LunInfo,
  PoolInfo,
  SnapshotInfo,
} from "./backend.js";
import { dataBlocks } from "./block-engine.js";
import { changedExtents, type CbtBase } from "./cbt.js";
import { checkStore, type CheckReport } from "./checker.js";
import { checkName, newId, newNaa } from "./ids.js";
import { IoGate, Mutex } from "./io-gate.js";
import { MetaDb } from "./meta-db.js";
import { RangeLock } from "./range-lock.js";
import { dropLineIfUnused, removeReader, retireSnapshot } from "./reclaim.js";
import type { Counters, GroupRecord, LineRecord, LunRecord, SnapshotRecord } from "./records.js";
import { SlotPool } from "./slot-pool.js";
import { newIdKey, parseSnapshotId, snapshotId } from "./snapshot-ids.js";
import { StoreState, type Reader } from "./store-state.js";
import { Volume, type VolumeTarget } from "./volume.js";

export const MIN_BLOCK_SIZE = 4096;
export const MAX_BLOCK_SIZE = 1024 * 1024;
export const DEFAULT_BLOCK_SIZE = 64 * 1024;
/** 256 TiB: well past the 64 TiB requirement; block indices stay far below 2^53. */
export const MAX_LUN_SIZE = 256 * 2 ** 40;

export interface OpenOptions {
  /** Pool capacity; writes that need more space fail with NoSpaceError. Default: unlimited. */
  capacityBytes?: number;
  /** Run the invariant checker after every management operation (tests). */
  strict?: boolean;
}

export type { CbtTarget, ChangedExtentsResult, GroupSnapshotInfo, LunInfo, PoolInfo, SnapshotInfo } from "./backend.js";

export class ArrayStore implements ArrayBackend {
  readonly capabilities: BackendCapabilities = {
    kind: "local",
    blockSize: DEFAULT_BLOCK_SIZE,
    // LUNs of other block sizes answer in their own block size; 64 KiB is the default and the largest common one.
    cbtGranularityBytes: DEFAULT_BLOCK_SIZE,
    cbtFromDeletedBase: true,
    cbtLiveTarget: true,
    maxSnapshotsPerLun: 0,
  };
  private readonly st: StoreState;
  private readonly mgmt = new Mutex();
  private readonly gates = new Map<string, IoGate>();
  private readonly locks = new Map<string, RangeLock>();
  private readonly strict: boolean;
  private syncReq = 0;
  private syncDone = 0;
  private syncing: Promise<void> | null = null;
  private closed = false;
  /** Recycled read buffers (Volume.readSparse): no fresh 256 KiB+ allocation and GC per read. */
  private readonly readBuffers = new BufferPool(64 * 1024 * 1024);

  private constructor(st: StoreState, strict: boolean) {
    this.st = st;
    this.strict = strict;
  }

  static async open(dir: string, opts: OpenOptions = {}): Promise<ArrayStore> {
    if (opts.capacityBytes !== undefined && (!Number.isSafeInteger(opts.capacityBytes) || opts.capacityBytes <= 0)) {
      throw new InvalidArgumentError(`capacity must be a positive number of bytes, got ${opts.capacityBytes}`);
    }
    await mkdir(dir, { recursive: true });
    const meta = MetaDb.open(dir);
    const st = new StoreState(meta, new SlotPool(dir, opts.capacityBytes ?? null));
    const store = new ArrayStore(st, opts.strict ?? false);
    await store.load();
    return store;
  }

  /** Loads the catalogue, removes incomplete group snapshots, rebuilds free lists. */
  private async load(): Promise<void> {
    const st = this.st;
    for (const { key, value } of st.meta.cat.getRange({})) {
      const [kind] = key;
      if (kind === "lun") st.luns.set((value as LunRecord).id, value as LunRecord);
      else if (kind === "snap") st.snaps.set((value as SnapshotRecord).id, value as SnapshotRecord);
      else if (kind === "line") st.lines.set((value as LineRecord).id, value as LineRecord);
      else if (kind === "group") st.groups.set((value as GroupRecord).id, value as GroupRecord);
      else if (kind === "ctr") st.ctr = value as Counters;
    }
    for (const l of st.lines.values()) st.ctr.nextLine = Math.max(st.ctr.nextLine, l.id + 1);
    if (st.ctr.idKey === undefined) {
      st.ctr.idKey = newIdKey();
      st.meta.txn(() => st.saveCounters());
    }
    for (const s of st.snaps.values()) if (s.state === "ready" || s.clones > 0) st.addReader(s.line, s.epoch);
    // RBD-style recovery: a group cut that never committed leaves only its intent record.
    const incomplete = [...st.groups.values()].filter((g) => g.state === "incomplete");
    if (incomplete.length > 0) {
      st.meta.txn(() => {
        for (const g of incomplete) {
          for (const s of [...st.snaps.values()]) if (s.groupId === g.id) st.dropSnap(s.id);
          st.dropGroup(g.id);
        }
      });
    }
    const sizes = new Set<number>([...st.lines.values()].map((l) => l.blockSize));
    const referenced = new Map<number, Set<number>>();
    for (const bs of sizes) {
      await st.pool.file(bs);
      referenced.set(bs, new Set());
    }
    for (const l of st.lines.values()) {
      const set = referenced.get(l.blockSize) as Set<number>;
      for (const e of st.meta.blockRange(l.id, 0, Number.MAX_SAFE_INTEGER)) if (e.slot > 0) set.add(e.slot);
    }
    for (const [bs, set] of referenced) st.pool.rebuild(bs, set);
    await this.durable();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.mgmt.run(async () => {
      this.closed = true;
      // A failed final sync is reported, but the files are closed either way.
      try {
        await this.durable();
      } finally {
        await this.st.pool.close();
        await this.st.meta.close();
      }
    });
  }

  // ------------------------------------------------------------------ plumbing

  private gate(lunId: string): IoGate {
    let g = this.gates.get(lunId);
    if (!g) this.gates.set(lunId, (g = new IoGate()));
    return g;
  }
  private lock(lunId: string): RangeLock {
    let l = this.locks.get(lunId);
    if (!l) this.locks.set(lunId, (l = new RangeLock()));
    return l;
  }

  /**
   * Makes every completed write and metadata commit durable: fdatasync the data
   * files, then sync LMDB (data before the metadata that points at it). Concurrent
   * callers share syncs; a caller never rides on a sync that started before it.
   * Afterwards, slots freed before the sync become reusable (slot-pool.ts).
   */
  async durable(): Promise<void> {
    const want = ++this.syncReq;
    while (this.syncDone < want) {
      if (this.syncing) {
        await this.syncing.catch(() => undefined);
        continue;
      }
      const covers = this.syncReq;
      const run = async (): Promise<void> => {
        const marks = this.st.pool.pendingMarks();
        await this.st.pool.syncData();
        await this.st.meta.sync();
        this.st.pool.reclaim(marks, this.st.minActiveSeq());
        this.syncDone = Math.max(this.syncDone, covers);
      };
      this.syncing = run().finally(() => (this.syncing = null));
      await this.syncing;
    }
  }

  /** Runs a management operation: serialised, with the given LUNs fenced, durable on return. */
  private async manage<T>(lunIds: string[], fn: () => T | Promise<T>): Promise<T> {
    return this.mgmt.run(async () => {
      if (this.closed) throw new FailedPreconditionError("the array store is closed");
      const fenced: IoGate[] = [];
      try {
        for (const id of new Set(lunIds)) {
          const g = this.gate(id);
          await g.fence();
          fenced.push(g);
        }
        const out = await fn();
        await this.durable();
        if (this.strict) await this.assertHealthy();
        return out;
      } finally {
        for (const g of fenced) g.unfence();
      }
    });
  }

  private async assertHealthy(): Promise<void> {
    const r = await checkStore(this.st, { deep: false });
    if (!r.ok) throw new CorruptError(`invariant check failed: ${r.errors.slice(0, 5).join("; ")}`);
  }

  // ------------------------------------------------------------------ info views

  private lunInfo(l: LunRecord): LunInfo {
    return { id: l.id, name: l.name, naa: l.naa, size: l.size, blockSize: l.blockSize, allocatedBytes: l.allocBlocks * l.blockSize, createdAt: l.createdAt, origin: l.origin };
  }
  private snapInfo(s: SnapshotRecord): SnapshotInfo {
    return { id: s.id, name: s.name, lunId: s.lunId, size: s.size, blockSize: s.blockSize, createdAt: s.createdAt, groupId: s.groupId, allocatedBytes: s.allocBlocks * s.blockSize };
  }
  private groupInfo(g: GroupRecord): GroupSnapshotInfo {
    return { id: g.id, name: g.name, createdAt: g.createdAt, members: g.snapshotIds.map((id) => this.snapInfo(this.st.snapshot(id))) };
  }

  // ------------------------------------------------------------------ LUNs

  private checkSize(size: number, blockSize: number): void {
    if (!Number.isSafeInteger(size) || size <= 0) throw new InvalidArgumentError(`LUN size must be a positive whole number of bytes, got ${size}`);
    if (size % blockSize !== 0) throw new InvalidArgumentError(`LUN size ${size} is not a multiple of the block size ${blockSize}`);
    if (size > MAX_LUN_SIZE) throw new InvalidArgumentError(`LUN size ${size} exceeds the maximum ${MAX_LUN_SIZE} (256 TiB)`);
  }

  /** Creates a thin LUN. Idempotent: the same name with the same size and block size returns the existing LUN. */
  async createLun(req: { name: string; size: number; blockSize?: number }): Promise<LunInfo> {
    checkName("LUN", req.name);
    const bs = req.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!Number.isSafeInteger(bs) || bs < MIN_BLOCK_SIZE || bs > MAX_BLOCK_SIZE || (bs & (bs - 1)) !== 0) {
      throw new InvalidArgumentError(`block size must be a power of two from 4 KiB to 1 MiB, got ${bs}`);
    }
    this.checkSize(req.size, bs);
    return this.manage([], async () => {
      const st = this.st;
      const existing = st.findLun(req.name);
      if (existing) {
        if (existing.size === req.size && existing.blockSize === bs && existing.origin === null) return this.lunInfo(existing);
        throw new AlreadyExistsError(`a LUN named ${quote(req.name)} already exists with different parameters`);
      }
      await st.pool.file(bs);
      const lun: LunRecord = { id: newId("lun"), name: req.name, naa: newNaa(), line: st.ctr.nextLine, size: req.size, blockSize: bs, createdAt: new Date().toISOString(), allocBlocks: 0, origin: null };
      st.meta.txn(() => {
        st.ctr.nextLine++;
        st.saveCounters();
        st.saveLine({ id: lun.line, blockSize: bs, parent: null, epoch: 1, lunId: lun.id });
        st.saveLun(lun);
      });
      return this.lunInfo(lun);
    });
  }

  listLuns(): LunInfo[] {
    return [...this.st.luns.values()].sort((a, b) => a.name.localeCompare(b.name)).map((l) => this.lunInfo(l));
  }

  /** By id or by name. */
  getLun(ref: string): LunInfo {
    return this.lunInfo(this.st.lun(ref));
  }

  /** Deletes a LUN and frees its unshared blocks. Its snapshots must be deleted first. */
  async deleteLun(ref: string): Promise<void> {
    const lun = this.st.lun(ref);
    await this.manage([lun.id], () => {
      const st = this.st;
      if (!st.luns.has(lun.id)) throw new NotFoundError(`LUN ${quote(ref)} not found`);
      const snaps = [...st.snaps.values()].filter((s) => s.lunId === lun.id && s.state === "ready");
      if (snaps.length > 0) throw new FailedPreconditionError(`LUN ${quote(lun.name)} still has ${snaps.length} snapshot(s) (${snaps.map((s) => s.name).join(", ")}); delete them first`);
      st.meta.txn(() => {
        const line = st.line(lun.line);
        removeReader(st, lun.line, line.epoch, true);
        st.saveLine({ ...line, lunId: null });
        st.dropLun(lun.id);
        dropLineIfUnused(st, lun.line);
      });
    });
    this.gates.delete(lun.id);
    this.locks.delete(lun.id);
  }

  /**
   * Grows or shrinks a LUN. Shrinking zeroes every block past the new end (zero
   * entries, reported by CBT as ZERO), so growing again never resurrects old data.
   */
  async resizeLun(ref: string, newSize: number): Promise<LunInfo> {
    const lun0 = this.st.lun(ref);
    this.checkSize(newSize, lun0.blockSize);
    return this.manage([lun0.id], () => {
      const st = this.st;
      const lun = st.lun(lun0.id);
      const bs = lun.blockSize;
      const line = st.line(lun.line);
      const E = line.epoch;
      const F = st.floor(lun.line);
      st.meta.txn(() => {
        let delta = 0;
        if (newSize < lun.size) {
          const r: Reader = st.liveReader(lun);
          for (const b of dataBlocks(st, r, newSize / bs, Math.ceil(lun.size / bs))) {
            const cur = st.meta.latest(lun.line, b, E, F);
            if (cur) {
              if (cur.epoch !== E) st.meta.removeEntry(lun.line, b, cur.epoch);
              if (cur.slot > 0) st.decref(bs, cur.slot);
            }
            st.meta.putEntry(lun.line, b, E, 0);
            delta--;
          }
        }
        st.saveLun({ ...lun, size: newSize, allocBlocks: lun.allocBlocks + delta });
      });
      return this.lunInfo(st.lun(lun.id));
    });
  }

  // ------------------------------------------------------------------ snapshots

  private cut(lun: LunRecord, name: string, groupId: string | null): SnapshotRecord {
    const st = this.st;
    const line = st.line(lun.line);
    const snap: SnapshotRecord = { id: snapshotId(st.idKey, { line: lun.line, epoch: line.epoch }), name, lunId: lun.id, line: lun.line, epoch: line.epoch, size: lun.size, blockSize: lun.blockSize, createdAt: new Date().toISOString(), groupId, state: "ready", clones: 0, allocBlocks: lun.allocBlocks };
    st.saveLine({ ...line, epoch: line.epoch + 1 });
    st.saveSnap(snap);
    st.addReader(lun.line, snap.epoch);
    return snap;
  }

  private findSnapByName(name: string): SnapshotRecord | undefined {
    for (const s of this.st.snaps.values()) if (s.state === "ready" && s.name === name) return s;
    return undefined;
  }

  private findGroupByName(name: string): GroupRecord | undefined {
    for (const g of this.st.groups.values()) if (g.name === name) return g;
    return undefined;
  }

  /** Snapshot of one LUN. Idempotent by name (same LUN returns the existing snapshot). */
  async createSnapshot(req: { lun: string; name: string }): Promise<SnapshotInfo> {
    checkName("snapshot", req.name);
    const lun0 = this.st.lun(req.lun);
    return this.manage([lun0.id], async () => {
      const st = this.st;
      const existing = this.findSnapByName(req.name);
      if (existing) {
        if (existing.lunId === lun0.id && existing.groupId === null) return this.snapInfo(existing);
        throw new AlreadyExistsError(`a snapshot named ${quote(req.name)} already exists for another source`);
      }
      const lun = st.lun(lun0.id);
      await st.pool.syncData(); // the cut must never reference data that is not yet on disk
      const snap = st.meta.txn(() => this.cut(lun, req.name, null));
      return this.snapInfo(snap);
    });
  }

  /**
   * Atomic consistency-group snapshot (RBD pattern, ANCHORS 2.4): durable intent
   * record (incomplete) -> fence all members and drain in-flight writes -> cut every
   * member in one transaction that also marks the group complete -> durable -> unfence.
   * A crash before the commit leaves only the intent, removed on the next open.
   * Idempotent by name for the same set of LUNs.
   */
  async createGroupSnapshot(req: { name: string; luns: string[] }): Promise<GroupSnapshotInfo> {
    checkName("group snapshot", req.name);
    if (req.luns.length === 0) throw new InvalidArgumentError("a group snapshot needs at least one LUN");
    const luns = req.luns.map((r) => this.st.lun(r));
    const ids = luns.map((l) => l.id);
    if (new Set(ids).size !== ids.length) throw new InvalidArgumentError("a group snapshot lists the same LUN twice");
    const st = this.st;
    const group: GroupRecord = { id: newId("grp"), name: req.name, lunIds: ids, snapshotIds: [], state: "incomplete", createdAt: new Date().toISOString() };
    // 1. intent, durable before any member is touched. Name checks run under the same lock.
    const existing = await this.mgmt.run(async () => {
      if (this.closed) throw new FailedPreconditionError("the array store is closed");
      const found = this.findGroupByName(req.name);
      if (found) {
        const same = found.state === "complete" && found.lunIds.length === ids.length && ids.every((id) => found.lunIds.includes(id));
        if (same) return found;
        throw new AlreadyExistsError(`a group snapshot named ${quote(req.name)} already exists${found.state === "complete" ? " for other LUNs" : " (being created)"}`);
      }
      for (const l of luns) if (this.findSnapByName(`${req.name}@${l.name}`)) throw new AlreadyExistsError(`snapshot name ${quote(`${req.name}@${l.name}`)} is taken`);
      st.meta.txn(() => st.saveGroup(group));
      await this.durable();
      return null;
    });
    if (existing) return this.groupInfo(existing);
    try {
      // 2-5. fence all, drain, cut + commit, unfence (manage() does fence/durable/unfence).
      return await this.manage(ids, async () => {
        await st.pool.syncData();
        const done = st.meta.txn(() => {
          const snaps = ids.map((id) => this.cut(st.lun(id), `${req.name}@${st.lun(id).name}`, group.id));
          const g: GroupRecord = { ...group, snapshotIds: snaps.map((s) => s.id), state: "complete" };
          st.saveGroup(g);
          return g;
        });
        return this.groupInfo(done);
      });
    } catch (e) {
      if (st.groups.get(group.id)?.state === "incomplete") {
        await this.mgmt.run(async () => {
          st.meta.txn(() => st.dropGroup(group.id));
          await this.durable();
        });
      }
      throw e;
    }
  }

  listSnapshots(filter: { lun?: string } = {}): SnapshotInfo[] {
    const lunId = filter.lun === undefined ? undefined : this.st.lun(filter.lun).id;
    return [...this.st.snaps.values()]
      .filter((s) => s.state === "ready" && (lunId === undefined || s.lunId === lunId))
      .sort((a, b) => (a.line === b.line ? a.epoch - b.epoch : a.createdAt.localeCompare(b.createdAt)))
      .map((s) => this.snapInfo(s));
  }

  getSnapshot(id: string): SnapshotInfo {
    return this.snapInfo(this.st.snapshot(id));
  }

  /**
   * Bytes that deleting this snapshot would free: entries only it sees, in slots
   * nothing else references. O(entries written in the snapshot's own interval).
   */
  snapshotExclusiveBytes(id: string): number {
    const st = this.st;
    const s = st.snapshot(id);
    if (s.clones > 0) return 0;
    const rs = st.readers.get(s.line) ?? [];
    let p = 0;
    let n: number | null = null;
    for (const r of rs) {
      if (r < s.epoch && r > p) p = r;
      if (r > s.epoch && (n === null || r < n)) n = r;
    }
    const line = st.line(s.line);
    if (n === null && line.lunId !== null) n = line.epoch;
    let count = 0;
    for (const e of st.meta.writeSet(s.line, p, s.epoch)) {
      if (e.slot === 0 || st.meta.refCount(s.blockSize, e.slot) > 1) continue;
      if (n === null || st.meta.latest(s.line, e.block, n, s.epoch)) count++;
    }
    return count * s.blockSize;
  }

  /**
   * Deletes a snapshot and reclaims the blocks only it held; while clones use it,
   * its blocks and record stay (reclaim.ts retireSnapshot). CBT from it keeps
   * working without any record: its id carries its epoch (snapshot-ids.ts).
   * A group member cannot be deleted alone (FailedPreconditionError).
   */
  async deleteSnapshot(id: string): Promise<void> {
    const s = this.st.snapshot(id);
    if (s.groupId !== null) throw new FailedPreconditionError(`snapshot ${id} is a member of group snapshot ${s.groupId}; delete the group snapshot instead`);
    await this.manage(this.st.luns.has(s.lunId) ? [s.lunId] : [], () => {
      this.st.meta.txn(() => retireSnapshot(this.st, this.st.snapshot(id)));
    });
  }

  listGroupSnapshots(): GroupSnapshotInfo[] {
    return [...this.st.groups.values()].filter((g) => g.state === "complete").map((g) => this.groupInfo(g));
  }

  getGroupSnapshot(id: string): GroupSnapshotInfo {
    const g = this.st.groups.get(id);
    if (!g || g.state !== "complete") throw new NotFoundError(`group snapshot ${quote(id)} not found`);
    return this.groupInfo(g);
  }

  /** Deletes a group snapshot and all its member snapshots. */
  async deleteGroupSnapshot(id: string): Promise<void> {
    const g = this.st.groups.get(id);
    if (!g || g.state !== "complete") throw new NotFoundError(`group snapshot ${quote(id)} not found`);
    await this.manage(g.lunIds.filter((l) => this.st.luns.has(l)), () => {
      this.st.meta.txn(() => {
        for (const sid of g.snapshotIds) {
          const s = this.st.snaps.get(sid);
          if (s && s.state === "ready") retireSnapshot(this.st, s);
        }
        this.st.dropGroup(g.id);
      });
    });
  }

  // ------------------------------------------------------------------ revert and clone

  /**
   * Reverts a LUN to one of its own snapshots. Only blocks changed since the
   * snapshot are touched (O(changes)): each gets a live entry sharing the
   * snapshot's slot (refcount) or a zero entry. The size returns to the snapshot's.
   */
  async revertLun(ref: string, snapshotId: string): Promise<LunInfo> {
    const lun0 = this.st.lun(ref);
    const s0 = this.st.snapshot(snapshotId);
    if (s0.lunId !== lun0.id) throw new InvalidArgumentError(`snapshot ${snapshotId} belongs to another LUN; a LUN can only be reverted to its own snapshots (clone the snapshot instead)`);
    return this.manage([lun0.id], () => {
      const st = this.st;
      const lun = st.lun(lun0.id);
      const s = st.snapshot(snapshotId);
      const L = lun.line;
      const bs = lun.blockSize;
      const E = st.line(L).epoch;
      const F = st.floor(L);
      const blocks = new Set<number>();
      for (const e of st.meta.writeSet(L, s.epoch, E)) blocks.add(e.block);
      st.meta.txn(() => {
        let delta = 0;
        for (const b of blocks) {
          const target = st.visible(L, s.epoch, b)?.slot ?? 0;
          const cur = st.meta.latest(L, b, E, F);
          const now = cur ? cur.slot : (st.visible(L, F, b)?.slot ?? 0);
          if (now === target) continue;
          if (cur) {
            if (cur.epoch !== E) st.meta.removeEntry(L, b, cur.epoch);
            if (cur.slot > 0) st.decref(bs, cur.slot);
          }
          if (target > 0) st.incref(bs, target);
          st.meta.putEntry(L, b, E, target);
          delta += (target > 0 ? 1 : 0) - (now > 0 ? 1 : 0);
        }
        st.saveLun({ ...lun, size: s.size, allocBlocks: lun.allocBlocks + delta });
      });
      return this.lunInfo(st.lun(lun.id));
    });
  }

  /** A new writable LUN sharing the snapshot's blocks (no copy; O(1)). Idempotent by name for the same snapshot. */
  async cloneSnapshot(req: { snapshot: string; name: string }): Promise<LunInfo> {
    checkName("LUN", req.name);
    this.st.snapshot(req.snapshot);
    return this.manage([], () => {
      const st = this.st;
      const s = st.snapshot(req.snapshot);
      const existing = st.findLun(req.name);
      if (existing) {
        if (existing.origin === s.id) return this.lunInfo(existing);
        throw new AlreadyExistsError(`a LUN named ${quote(req.name)} already exists`);
      }
      const lun: LunRecord = { id: newId("lun"), name: req.name, naa: newNaa(), line: st.ctr.nextLine, size: s.size, blockSize: s.blockSize, createdAt: new Date().toISOString(), allocBlocks: s.allocBlocks, origin: s.id };
      st.meta.txn(() => {
        st.ctr.nextLine++;
        st.saveCounters();
        st.saveLine({ id: lun.line, blockSize: s.blockSize, parent: { line: s.line, epoch: s.epoch, snapshotId: s.id }, epoch: 1, lunId: lun.id });
        st.saveLun(lun);
        st.saveSnap({ ...s, clones: s.clones + 1 });
      });
      return this.lunInfo(lun);
    });
  }

  // ------------------------------------------------------------------ CBT and allocation

  private reader(t: CbtTarget): Reader {
    return "lun" in t ? this.st.liveReader(this.st.lun(t.lun)) : this.st.snapReader(this.st.snapshot(t.snapshot));
  }

  /**
   * Blocks that changed between `baseSnapshotId` and the target (a later snapshot,
   * or a LUN's live state), flagged DATA or ZERO. The base may be a deleted
   * snapshot: its id names its (line, epoch), which is all CBT needs, for as long as
   * the line exists. Throws CbtUnavailableError when only a full backup can help.
   */
  changedExtents(baseSnapshotId: string, target: CbtTarget): ChangedExtentsResult {
    const base = this.cbtBase(baseSnapshotId);
    if (!base) throw new NotFoundError(`base snapshot ${quote(baseSnapshotId)} not found`);
    const r = this.reader(target);
    return { blockSize: r.blockSize, size: r.size, extents: changedExtents(this.st, base, r) };
  }

  /** A record (ready, clone-pinned or an old-format tombstone), else what a deleted snapshot's id says. */
  private cbtBase(id: string): CbtBase | undefined {
    const rec = this.st.snaps.get(id);
    if (rec) return rec;
    const place = parseSnapshotId(this.st.idKey, id);
    const line = place && this.st.lines.get(place.line);
    if (!place || !line || place.epoch >= line.epoch) return undefined;
    return { id, line: line.id, epoch: place.epoch, blockSize: line.blockSize };
  }

  /** Extents holding data (not zero/hole) in a snapshot or a live LUN. O(mapped entries). */
  allocatedExtents(target: CbtTarget): AllocatedExtentsResult {
    const r = this.reader(target);
    return { blockSize: r.blockSize, size: r.size, extents: fromBlocks(dataBlocks(this.st, r, 0, Math.ceil(r.size / r.blockSize)), r.blockSize) };
  }

  // ------------------------------------------------------------------ I/O, space, checks

  /** An I/O handle on a LUN (read-write) or a snapshot (read-only). */
  openVolume(target: VolumeTarget): Volume {
    return new Volume(this.st, { gate: (id) => this.gate(id), lock: (id) => this.lock(id), durable: () => this.durable(), buffers: this.readBuffers }, target);
  }

  poolInfo(): PoolInfo {
    const used = this.st.pool.usedBytes();
    const cap = this.st.pool.capacityBytes;
    return { capacityBytes: cap, usedBytes: used, freeBytes: cap === null ? null : Math.max(0, cap - used) };
  }

  /** Makes every completed write durable (FLUSH for the whole array). */
  flush(): Promise<void> {
    return this.durable();
  }

  /** Runs the invariant checker (fsck). `deep` also reads every referenced slot of every snapshot. */
  async check(opts: { deep?: boolean } = {}): Promise<CheckReport> {
    return this.mgmt.run(() => checkStore(this.st, { deep: opts.deep ?? false }));
  }
}


