/**
 * A per-volume I/O handle: the whole surface an NBD backend needs.
 * A LUN volume is read-write; a snapshot volume is read-only. Every call re-resolves
 * the LUN/snapshot, so a deleted volume fails with NotFoundError and a resized one
 * sees its new size.
 *
 * Concurrency: calls may be in flight in any number. Mutations of overlapping
 * blocks run in arrival order (range lock); every mutation passes the LUN's I/O
 * gate so a (group) snapshot waits for it to finish and holds it entirely or not at all.
 */
import type { WriteOptions } from "../../src/block-device.js";
import { InvalidArgumentError, NoSpaceError, OutOfRangeError, ReadOnlyError } from "../../src/errors.js";
import type { StatusExtent } from "../../src/nbd/backend.js";
import type { BufferPool } from "../../src/nbd/buffer-pool.js";
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from "../../src/nbd/constants.js";
import { dataBlocks, readRange, readSparseInto, splitRange, writeTouches } from "./block-engine.js";
import type { IoGate } from "./io-gate.js";
import type { RangeLock } from "./range-lock.js";
import type { Reader, StoreState } from "./store-state.js";

/** base:allocation state of an unmapped or zero block: a hole, which reads as zeros. */
const HOLE = NBD_STATE_HOLE | NBD_STATE_ZERO;

/**
 * Part of a sparse read (same shape as the NBD layer's ReadPiece): data, or a hole
 * that reads as zeros. Offsets are absolute. `release`, when present, must be
 * called once the data is no longer needed (it recycles a pooled buffer).
 */
export type VolumeReadPiece = { offset: number; data: Buffer; release?: () => void } | { offset: number; hole: number };

export interface VolumeHooks {
  gate(lunId: string): IoGate;
  lock(lunId: string): RangeLock;
  durable(): Promise<void>;
  /** Pooled read buffers for readSparse. */
  buffers: BufferPool;
}

export type VolumeTarget = { lun: string } | { snapshot: string };

export class Volume {
  private readonly st: StoreState;
  private readonly hooks: VolumeHooks;
  /** LUN id or snapshot id. */
  readonly id: string;
  readonly readOnly: boolean;
  readonly blockSize: number;

  constructor(st: StoreState, hooks: VolumeHooks, target: VolumeTarget) {
    this.st = st;
    this.hooks = hooks;
    if ("lun" in target) {
      const l = st.lun(target.lun);
      this.id = l.id;
      this.readOnly = false;
      this.blockSize = l.blockSize;
    } else {
      const s = st.snapshot(target.snapshot);
      this.id = s.id;
      this.readOnly = true;
      this.blockSize = s.blockSize;
    }
  }

  private reader(): Reader {
    return this.readOnly ? this.st.snapReader(this.st.snapshot(this.id)) : this.st.liveReader(this.st.lun(this.id));
  }

  /** Current size in bytes. */
  get size(): number {
    return this.reader().size;
  }

  private check(offset: number, length: number, size: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new InvalidArgumentError(`invalid range offset=${offset} length=${length}`);
    }
    if (offset + length > size) throw new OutOfRangeError(`range ${offset}+${length} is beyond the end of the volume (${size} bytes)`);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const seq = this.st.beginIo();
    try {
      const r = this.reader();
      this.check(offset, length, r.size);
      return await readRange(this.st, r, offset, length);
    } finally {
      this.st.endIo(seq);
    }
  }

  /**
   * Like `read`, but reports unmapped and zero blocks as holes and reads the data
   * into one pooled buffer: call each data piece's `release` once it has been sent.
   */
  async readSparse(offset: number, length: number): Promise<VolumeReadPiece[]> {
    const seq = this.st.beginIo();
    try {
      const r = this.reader();
      this.check(offset, length, r.size);
      if (length === 0) return [{ offset, data: Buffer.alloc(0) }];
      const pool = this.hooks.buffers;
      const buf = pool.get(length);
      let runs;
      try {
        runs = await readSparseInto(this.st, r, offset, length, buf);
      } catch (e) {
        pool.release(buf);
        throw e;
      }
      let left = 0;
      for (const run of runs) if (run.flag === "data") left++;
      if (left === 0) pool.release(buf);
      const release = (): void => {
        if (--left === 0) pool.release(buf);
      };
      return runs.map((run) => (run.flag === "hole" ? { offset: run.offset, hole: run.length } : { offset: run.offset, data: buf.subarray(run.offset - offset, run.offset - offset + run.length), release }));
    } finally {
      this.st.endIo(seq);
    }
  }

  write(offset: number, data: Uint8Array, opts: WriteOptions = {}): Promise<void> {
    return this.mutate(offset, data.length, data, opts);
  }
  /** WRITE_ZEROES. Whole blocks become zero entries (no space); partial blocks are written. */
  zero(offset: number, length: number, opts: WriteOptions = {}): Promise<void> {
    return this.mutate(offset, length, null, opts);
  }
  /** TRIM: like zero (a trimmed range reads back as zeros, which NBD permits). */
  trim(offset: number, length: number, opts: WriteOptions = {}): Promise<void> {
    return this.mutate(offset, length, null, opts);
  }

  private async mutate(offset: number, length: number, src: Uint8Array | null, opts: WriteOptions): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError(`snapshot ${this.id} is read-only`);
    const gate = this.hooks.gate(this.id);
    await gate.enter();
    const seq = this.st.beginIo();
    try {
      const lun = this.st.lun(this.id);
      this.check(offset, length, lun.size);
      if (length === 0) return;
      const bs = lun.blockSize;
      const release = await this.hooks.lock(lun.id).acquire(Math.floor(offset / bs), Math.ceil((offset + length) / bs));
      try {
        try {
          await writeTouches(this.st, this.st.lun(this.id), splitRange(offset, length, bs, src));
        } catch (e) {
          // A full pool may only be waiting for a sync to reuse freed slots: sync once, retry once.
          if (!(e instanceof NoSpaceError) || this.st.pool.pendingCount() === 0) throw e;
          await this.hooks.durable();
          await writeTouches(this.st, this.st.lun(this.id), splitRange(offset, length, bs, src));
        }
      } finally {
        release();
      }
    } finally {
      this.st.endIo(seq);
      gate.exit();
    }
    if (opts.fua) await this.hooks.durable();
  }

  /** FLUSH: every write completed before this call is durable when it resolves. */
  async flush(): Promise<void> {
    await this.hooks.durable();
  }

  /**
   * Allocation status of [offset, offset+length) in NBD base:allocation terms
   * (flag 0: data; HOLE|ZERO: reads as zeros), so the NBD export passes it on
   * unchanged. Cost O(mapped entries in the range).
   */
  blockStatus(offset: number, length: number): StatusExtent[] {
    const r = this.reader();
    this.check(offset, length, r.size);
    const bs = r.blockSize;
    const stop = offset + length;
    const data = dataBlocks(this.st, r, Math.floor(offset / bs), Math.ceil(stop / bs));
    const out: StatusExtent[] = [];
    const push = (lo: number, hi: number, isData: boolean): void => {
      const from = Math.max(lo, offset);
      const to = Math.min(hi, stop);
      if (from >= to) return;
      const flag = isData ? 0 : HOLE;
      const last = out[out.length - 1];
      if (last && last.offset + last.length === from && last.flag === flag) out[out.length - 1] = { offset: last.offset, length: last.length + to - from, flag };
      else out.push({ offset: from, length: to - from, flag });
    };
    let pos = offset;
    for (const block of data) {
      push(pos, block * bs, false);
      push(block * bs, (block + 1) * bs, true);
      pos = Math.max(pos, (block + 1) * bs);
    }
    push(pos, stop, false);
    return out;
  }
}
