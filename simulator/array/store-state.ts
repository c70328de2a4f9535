/**
 * The store's shared state and the block-mapping primitives every operation uses.
 *
 * Mapping model (see records.ts and docs/store.md): an entry (line, block, epoch)
 * -> slot records that `block` was touched (written, zeroed, trimmed, reverted,
 * shrunk away) at `epoch`. A reader (live LUN or snapshot) at epoch x on line L
 * sees, for each block, the newest entry with epoch <= x on L, else whatever the
 * parent (clone origin) sees at the fork epoch, else zeros.
 *
 * Invariant kept by writes and by reclaim.ts: between two consecutive readers of a
 * line there is at most one entry per block, and it carries the epoch of the latest
 * touch in that interval. Hence "touched in (t, R]" <=> "has an entry in (t, R]",
 * for any epoch t, which is what CBT relies on, even for deleted (tombstone) bases.
 */
import { NoSpaceError, NotFoundError, fsError, quote } from "../../src/errors.js";
import type { MetaDb } from "./meta-db.js";
import type { GroupRecord, LineRecord, LunRecord, SnapshotRecord, Counters } from "./records.js";
import type { SlotPool } from "./slot-pool.js";

export interface Reader {
  line: number;
  epoch: number;
  size: number;
  blockSize: number;
}

export interface Visible {
  line: number;
  epoch: number;
  /** 0 = zero/trimmed. */
  slot: number;
}

export class StoreState {
  readonly meta: MetaDb;
  readonly pool: SlotPool;
  readonly luns = new Map<string, LunRecord>();
  readonly snaps = new Map<string, SnapshotRecord>();
  readonly lines = new Map<number, LineRecord>();
  readonly groups = new Map<string, GroupRecord>();
  /** Per line: sorted epochs of snapshot readers (ready, or deleted but pinned by clones). */
  readonly readers = new Map<number, number[]>();
  ctr: Counters = { nextLine: 1 };

  /** The key of snapshot-id tags (snapshot-ids.ts); ArrayStore.load makes sure there is one. */
  get idKey(): string {
    const k = this.ctr.idKey;
    if (k === undefined) throw new Error("the catalogue has no snapshot-id key (load() adds one)");
    return k;
  }

  private nextSeq = 1;
  private readonly active = new Set<number>();
  private commits: { fn: () => void; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private commitScheduled = false;

  constructor(meta: MetaDb, pool: SlotPool) {
    this.meta = meta;
    this.pool = pool;
  }

  // ---- I/O sequence tracking (for safe slot reuse, see slot-pool.ts) ----
  beginIo(): number {
    const s = this.nextSeq++;
    this.active.add(s);
    return s;
  }
  endIo(seq: number): void {
    this.active.delete(seq);
  }
  minActiveSeq(): number {
    let m = this.nextSeq;
    for (const s of this.active) if (s < m) m = s;
    return m;
  }

  // ---- group commit of write requests' mapping changes ----
  /**
   * Runs `fn` (mapping changes of one write request) in a metadata transaction
   * shared with every other request that reaches this point in the same turn of the
   * event loop; resolves once that transaction has committed. One LMDB commit per
   * batch instead of per request. Each request's data is already in its slots, and
   * the request (holding its range lock and its LUN's I/O gate) is acknowledged only
   * after the commit, so ordering, fencing and crash safety are as with one
   * transaction per request. If the shared transaction fails, every request in it fails.
   */
  commitSoon(fn: () => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.commits.push({ fn, resolve, reject });
      if (!this.commitScheduled) {
        this.commitScheduled = true;
        setImmediate(() => this.runCommits());
      }
    });
  }
  private runCommits(): void {
    this.commitScheduled = false;
    const batch = this.commits;
    this.commits = [];
    try {
      this.meta.txn(() => {
        for (const c of batch) c.fn();
      });
    } catch (e) {
      const err = /MDB_MAP_FULL/.test(String(e)) ? new NoSpaceError(`metadata is full (${String(e)})`) : fsError(e, "metadata commit failed");
      for (const c of batch) c.reject(err);
      return;
    }
    for (const c of batch) c.resolve();
  }

  // ---- catalogue lookups ----
  line(id: number): LineRecord {
    const l = this.lines.get(id);
    if (!l) throw new NotFoundError(`line ${id} not found`);
    return l;
  }
  findLun(ref: string): LunRecord | undefined {
    const byId = this.luns.get(ref);
    if (byId) return byId;
    for (const l of this.luns.values()) if (l.name === ref) return l;
    return undefined;
  }
  lun(ref: string): LunRecord {
    const l = this.findLun(ref);
    if (!l) throw new NotFoundError(`LUN ${quote(ref)} not found`);
    return l;
  }
  snapshot(id: string): SnapshotRecord {
    const s = this.snaps.get(id);
    if (!s || s.state !== "ready") throw new NotFoundError(`snapshot ${quote(id)} not found`);
    return s;
  }
  liveReader(lun: LunRecord): Reader {
    return { line: lun.line, epoch: this.line(lun.line).epoch, size: lun.size, blockSize: lun.blockSize };
  }
  snapReader(s: SnapshotRecord): Reader {
    return { line: s.line, epoch: s.epoch, size: s.size, blockSize: s.blockSize };
  }

  /** Epoch of the newest snapshot reader on `line` (0 if none): entries above it belong to the live LUN only. */
  floor(line: number): number {
    const r = this.readers.get(line);
    return r && r.length > 0 ? (r[r.length - 1] as number) : 0;
  }
  addReader(line: number, epoch: number): void {
    const r = this.readers.get(line) ?? [];
    r.push(epoch);
    r.sort((a, b) => a - b);
    this.readers.set(line, r);
  }
  removeReaderEpoch(line: number, epoch: number): void {
    const r = (this.readers.get(line) ?? []).filter((e) => e !== epoch);
    if (r.length > 0) this.readers.set(line, r);
    else this.readers.delete(line);
  }

  // ---- mapping lookups ----
  /** What a reader at (line, epoch) sees for `block`, or undefined for never-written. */
  visible(line: number, epoch: number, block: number): Visible | undefined {
    let l: number = line;
    let x = epoch;
    for (;;) {
      const e = this.meta.latest(l, block, x);
      if (e) return { line: l, epoch: e.epoch, slot: e.slot };
      const parent = this.line(l).parent;
      if (!parent) return undefined;
      l = parent.line;
      x = parent.epoch;
    }
  }

  /**
   * `visible` for every block in [b0, b1) (result[i] is block b0 + i), with one
   * range scan per line of the clone ancestry instead of one lookup per block.
   */
  visibleRange(line: number, epoch: number, b0: number, b1: number): (Visible | undefined)[] {
    const out = new Array<Visible | undefined>(b1 - b0).fill(undefined);
    let l: number = line;
    let x = epoch;
    let lo = b0;
    let hi = b1;
    for (;;) {
      const scan = this.meta.latestRange(l, lo, hi, [x], 4 * (hi - lo) + 16);
      const row = scan?.[0];
      if (row === undefined) {
        // Dense history: per-block lookups from this line on (blocks still open have nothing above).
        for (let b = lo; b < hi; b++) if (out[b - b0] === undefined) out[b - b0] = this.visible(l, x, b);
        return out;
      }
      let nlo = -1;
      let nhi = -1;
      for (let b = lo; b < hi; b++) {
        if (out[b - b0] !== undefined) continue;
        const e = row[b - lo];
        if (e) out[b - b0] = { line: l, epoch: e.epoch, slot: e.slot };
        else {
          if (nlo < 0) nlo = b;
          nhi = b + 1;
        }
      }
      const parent = this.line(l).parent;
      if (nlo < 0 || !parent) return out;
      l = parent.line;
      x = parent.epoch;
      lo = nlo;
      hi = nhi;
    }
  }

  /** Blocks in [b0, b1) that have any entry visible-or-shadowed for a reader at (line, epoch); sorted, distinct. */
  candidateBlocks(line: number, epoch: number, b0: number, b1: number): number[] {
    const set = new Set<number>();
    let l: number | undefined = line;
    let x = epoch;
    while (l !== undefined) {
      for (const e of this.meta.blockRange(l, b0, b1)) if (e.epoch <= x) set.add(e.block);
      const p: LineRecord["parent"] = this.line(l).parent;
      l = p?.line;
      x = p?.epoch ?? 0;
    }
    return [...set].sort((a, b) => a - b);
  }

  // ---- reference counting (inside a metadata transaction) ----
  incref(blockSize: number, slot: number): void {
    this.meta.setRefCount(blockSize, slot, this.meta.refCount(blockSize, slot) + 1);
  }
  decref(blockSize: number, slot: number): void {
    const n = this.meta.refCount(blockSize, slot);
    if (n > 1) this.meta.setRefCount(blockSize, slot, n - 1);
    else this.pool.release(blockSize, slot, this.nextSeq);
  }

  // ---- catalogue persistence (inside a metadata transaction) ----
  saveLun(l: LunRecord): void {
    this.luns.set(l.id, l);
    this.meta.cat.putSync(["lun", l.id], l);
  }
  dropLun(id: string): void {
    this.luns.delete(id);
    this.meta.cat.removeSync(["lun", id]);
  }
  saveSnap(s: SnapshotRecord): void {
    this.snaps.set(s.id, s);
    this.meta.cat.putSync(["snap", s.id], s);
  }
  dropSnap(id: string): void {
    this.snaps.delete(id);
    this.meta.cat.removeSync(["snap", id]);
  }
  saveLine(l: LineRecord): void {
    this.lines.set(l.id, l);
    this.meta.cat.putSync(["line", l.id], l);
  }
  dropLine(id: number): void {
    this.lines.delete(id);
    this.readers.delete(id);
    this.meta.cat.removeSync(["line", id]);
  }
  saveGroup(g: GroupRecord): void {
    this.groups.set(g.id, g);
    this.meta.cat.putSync(["group", g.id], g);
  }
  dropGroup(id: string): void {
    this.groups.delete(id);
    this.meta.cat.removeSync(["group", id]);
  }
  saveCounters(): void {
    this.meta.cat.putSync(["ctr", 0], { ...this.ctr });
  }
}
