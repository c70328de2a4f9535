/**
 * Data slots: one file per block size (`blocks-<size>.dat`), slot n (n >= 1) at
 * byte offset (n - 1) * blockSize. Slot 0 is never stored: it means "zero".
 *
 * Crash-safety rule (bbolt's freelist rule): a slot freed by a metadata change
 * goes to `pending` and only becomes allocatable after (a) that change has been
 * synced to disk and (b) every I/O that started before the free has finished (a
 * read may still be copying the old contents). Otherwise a crash could leave old
 * metadata pointing at a slot already overwritten with someone else's data.
 *
 * The free list is not persisted: on open it is rebuilt from the mappings
 * (slots up to the highest referenced one, minus those referenced).
 */
import { write as fsWrite, writev as fsWritev } from "node:fs";
import { open as fsOpen, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { NoSpaceError } from "../../src/errors.js";
import { PreadQueue } from "../../src/fsio/pread-queue.js";

interface Pending {
  slot: number;
  /** I/O sequence number at the time of the free. */
  seq: number;
}

interface QueuedWrite {
  pos: number;
  data: Uint8Array;
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * Positioned writes in the threadpool at once, per slot file: libuv's default pool
 * size. Deeper queues are combined instead. (In our runs of `bench -- store`, depth
 * 2 slowed 4 KiB random overwrites at QD16; depth 4 did not.)
 */
const WRITE_DEPTH = 4;
const MAX_BATCH_OPS = 64; // well under IOV_MAX
const MAX_BATCH_BYTES = 8 * 1024 * 1024;

/** pwrite all of `data` at `pos` (retrying short writes). */
function writeAll(fd: number, pos: number, data: Uint8Array, cb: (err: Error | null) => void, done = 0): void {
  fsWrite(fd, data, done, data.length - done, pos + done, (err, n) => {
    if (err) cb(err);
    else if (done + n >= data.length) cb(null);
    else writeAll(fd, pos, data, cb, done + n);
  });
}

/** pwritev all of `bufs` at `pos`; a short write finishes the rest buffer by buffer. */
function writevAll(fd: number, pos: number, bufs: Uint8Array[], cb: (err: Error | null) => void): void {
  fsWritev(fd, bufs, pos, (err, n) => {
    if (err) return cb(err);
    let off = pos;
    let left = n;
    const rest: { pos: number; data: Uint8Array }[] = [];
    for (const b of bufs) {
      if (left >= b.length) left -= b.length;
      else {
        rest.push({ pos: off + left, data: b.subarray(left) });
        left = 0;
      }
      off += b.length;
    }
    const next = (i: number): void => {
      const r = rest[i];
      if (r === undefined) cb(null);
      else writeAll(fd, r.pos, r.data, (e) => (e ? cb(e) : next(i + 1)));
    };
    next(0);
  });
}

export class SlotFile {
  readonly blockSize: number;
  readonly fh: FileHandle;
  hwm = 0;
  free: number[] = [];
  pending: Pending[] = [];
  dirty = false;

  /** Reads that queue and are contiguous in the file share one preadv (src/fsio/pread-queue.ts). */
  private readonly reads: PreadQueue;

  constructor(blockSize: number, fh: FileHandle) {
    this.blockSize = blockSize;
    this.fh = fh;
    this.reads = new PreadQueue(fh.fd);
  }

  position(slot: number): number {
    return (slot - 1) * this.blockSize;
  }

  /**
   * Writes `data` at slot `slot` (+ `within`); `data` may span several consecutive
   * slots. Resolves once the bytes are in the file (page cache).
   *
   * Writes go through a small per-file queue: at most WRITE_DEPTH positioned writes
   * are in the threadpool at once, and queued writes that are contiguous in the file
   * are combined into one pwritev. Concurrent buffered writes to one file serialise
   * on the inode lock anyway, so deeper submission only costs thread hand-offs.
   * Queued writes never overlap (overlapping block writes are serialised by the
   * range lock; a slot is reused only after every I/O that could touch it has ended),
   * so combining them out of arrival order is safe.
   */
  write(slot: number, data: Uint8Array, within = 0): Promise<void> {
    this.dirty = true;
    if (data.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.wq.push({ pos: this.position(slot) + within, data, resolve, reject });
      this.pump();
    });
  }

  private readonly wq: QueuedWrite[] = [];
  private wInflight = 0;

  private pump(): void {
    while (this.wInflight < WRITE_DEPTH && this.wq.length > 0) {
      if (this.wq.length > 1) this.wq.sort((a, b) => a.pos - b.pos);
      const batch: QueuedWrite[] = [this.wq[0] as QueuedWrite];
      let end = batch[0]!.pos + batch[0]!.data.length;
      let bytes = batch[0]!.data.length;
      while (batch.length < MAX_BATCH_OPS && bytes < MAX_BATCH_BYTES) {
        const next = this.wq[batch.length];
        if (next === undefined || next.pos !== end) break;
        batch.push(next);
        end += next.data.length;
        bytes += next.data.length;
      }
      this.wq.splice(0, batch.length);
      this.wInflight++;
      const done = (err: Error | null): void => {
        this.wInflight--;
        // Marked on completion too: a sync that cleared the flag while this write was
        // in flight did not cover it, and the next sync must.
        this.dirty = true;
        for (const w of batch) {
          if (err) w.reject(err);
          else w.resolve();
        }
        this.pump();
      };
      if (batch.length === 1) writeAll(this.fh.fd, batch[0]!.pos, batch[0]!.data, done);
      else writevAll(this.fh.fd, batch[0]!.pos, batch.map((w) => w.data), done);
    }
  }

  /** One positioned read into `into` (which may span consecutive slots); a sparse tail reads as zeros. */
  async read(slot: number, into: Uint8Array, within: number): Promise<void> {
    const base = this.position(slot) + within;
    let done = 0;
    while (done < into.length) {
      const n = await this.reads.read(into.subarray(done), base + done);
      if (n === 0) {
        into.fill(0, done); // sparse tail of the file reads as zeros
        return;
      }
      done += n;
    }
  }
}

export class SlotPool {
  private readonly files = new Map<number, SlotFile>();
  private readonly dir: string;
  capacityBytes: number | null;
  private reservedBytes = 0;

  constructor(dir: string, capacityBytes: number | null) {
    this.dir = dir;
    this.capacityBytes = capacityBytes;
  }

  /** Opens (creating if needed) the slot file for a block size. Called only under the management lock. */
  async file(blockSize: number): Promise<SlotFile> {
    let f = this.files.get(blockSize);
    if (!f) {
      const path = join(this.dir, `blocks-${blockSize}.dat`);
      await (await fsOpen(path, "a")).close(); // create; "a" itself would ignore write positions
      f = new SlotFile(blockSize, await fsOpen(path, "r+"));
      this.files.set(blockSize, f);
    }
    return f;
  }

  /** Synchronous access for files already opened (every file is opened before use). */
  fileSync(blockSize: number): SlotFile {
    const f = this.files.get(blockSize);
    if (!f) throw new Error(`slot file for block size ${blockSize} not open`);
    return f;
  }

  /** Rebuilds hwm and the free list from the set of referenced slots. */
  rebuild(blockSize: number, referenced: Set<number>): void {
    const f = this.fileSync(blockSize);
    let hwm = 0;
    for (const s of referenced) hwm = Math.max(hwm, s);
    f.hwm = hwm;
    f.free = [];
    f.pending = [];
    for (let s = hwm; s >= 1; s--) if (!referenced.has(s)) f.free.push(s);
  }

  usedBytes(): number {
    let used = 0;
    for (const f of this.files.values()) used += (f.hwm - f.free.length) * f.blockSize;
    return used;
  }

  /** Slots that are neither free nor pending, per file (for the checker). */
  snapshotState(): { blockSize: number; hwm: number; free: number[]; pending: number[] }[] {
    return [...this.files.values()].map((f) => ({ blockSize: f.blockSize, hwm: f.hwm, free: [...f.free], pending: f.pending.map((p) => p.slot) }));
  }

  /**
   * Allocates `count` slots atomically: either all or NoSpaceError with nothing taken.
   * Reusing a free slot costs no new space; growing the file must fit the capacity.
   */
  allocate(blockSize: number, count: number): number[] {
    if (count === 0) return [];
    const f = this.fileSync(blockSize);
    const fromFree = Math.min(count, f.free.length);
    const grow = count - fromFree;
    if (this.capacityBytes !== null && grow > 0 && this.usedBytes() + this.reservedBytes + grow * blockSize > this.capacityBytes) {
      throw new NoSpaceError(`pool is full: ${this.usedBytes()} of ${this.capacityBytes} bytes used, ${grow * blockSize} more needed`);
    }
    const out: number[] = [];
    // Lowest free slots first keeps sequential writes sequential.
    for (let i = 0; i < fromFree; i++) out.push(f.free.pop() as number);
    for (let i = 0; i < grow; i++) out.push(++f.hwm);
    return out;
  }

  /** Returns never-referenced slots (a write that failed before its metadata commit). */
  unallocate(blockSize: number, slots: readonly number[]): void {
    const f = this.fileSync(blockSize);
    for (const s of slots) f.free.push(s);
    f.free.sort((a, b) => b - a);
  }

  /** A metadata change (already committed) dropped the last reference to `slot`. */
  release(blockSize: number, slot: number, seq: number): void {
    this.fileSync(blockSize).pending.push({ slot, seq });
  }

  /** Slots waiting for a sync before they can be reused. */
  pendingCount(): number {
    let n = 0;
    for (const f of this.files.values()) n += f.pending.length;
    return n;
  }

  /** Which pending slots a sync starting now will cover. */
  pendingMarks(): Map<number, number> {
    const m = new Map<number, number>();
    for (const f of this.files.values()) m.set(f.blockSize, f.pending.length);
    return m;
  }

  /** After a sync: frees pending slots covered by it whose readers are gone. */
  reclaim(marks: Map<number, number>, minActiveSeq: number): void {
    for (const f of this.files.values()) {
      const n = marks.get(f.blockSize) ?? 0;
      const keep: Pending[] = [];
      f.pending.forEach((p, i) => {
        if (i < n && p.seq <= minActiveSeq) f.free.push(p.slot);
        else keep.push(p);
      });
      f.pending = keep;
      f.free.sort((a, b) => b - a);
    }
  }

  async syncData(): Promise<void> {
    await Promise.all(
      [...this.files.values()].map(async (f) => {
        if (!f.dirty) return;
        f.dirty = false;
        await f.fh.datasync();
      }),
    );
  }

  async close(): Promise<void> {
    for (const f of this.files.values()) await f.fh.close();
    this.files.clear();
  }
}
