/**
 * An NbdBackend over one store Volume: a LUN (read-write) or a snapshot
 * (read-only). Capabilities: FLUSH/FUA (the store's durable()), TRIM and
 * WRITE_ZEROES (whole blocks become zero entries, so FAST_ZERO is honest),
 * multi-conn (every connection writes the same store and FLUSH syncs it all).
 *
 * Meta contexts:
 *  - base:allocation, from the store's mapping (O(mapped entries in the range));
 *  - on snapshot exports, qemu:dirty-bitmap:<base-snapshot-id> for every older
 *    snapshot of the same LUN: bit 0 (NBD_STATE_DIRTY) where the block changed
 *    since that base. The answer comes from the store's CBT (changedExtents,
 *    O(changed extents)), computed once per base and connection: both snapshots
 *    are immutable, so it cannot go stale.
 *
 * The export size is fixed when the connection opens (NBD has no resize here).
 */
import type { NbdBackend, ReadPiece, StatusExtent, WriteOptions, ZeroOptions } from "../../../src/nbd/backend.js";
import { NBD_META_BASE_ALLOCATION, NBD_META_QEMU_DIRTY_BITMAP_PREFIX, NBD_STATE_DIRTY } from "../../../src/nbd/constants.js";
import { InvalidArgumentError, quote } from "../../../src/errors.js";
import type { Extent } from "../../../src/extents/index.js";
import type { LunVolume } from "../backend.js";
import type { IoCounters } from "./io-counters.js";

/** Changed extents of a snapshot since `base`, sorted and non-overlapping. */
export type DirtySource = (baseSnapshotId: string) => Extent[] | Promise<Extent[]>;

export interface VolumeBackendOptions {
  description: string;
  /** Array-wide NBD I/O counters (GetPoolStats). */
  counters?: IoCounters;
  /** Base snapshot ids offered as qemu:dirty-bitmap contexts (snapshot exports). */
  dirtyBases?: readonly string[];
  dirty?: DirtySource;
}

export class VolumeBackend implements NbdBackend {
  readonly size: number;
  readonly readOnly: boolean;
  readonly canFlush = true;
  readonly canFua = true;
  readonly canTrim: boolean;
  readonly canZero: boolean;
  readonly canFastZero: boolean;
  readonly canCache = true;
  readonly canMultiConn = true;
  readonly description: string;
  readonly blockSize;
  private readonly contexts: string[];
  private readonly dirtyCache = new Map<string, Extent[]>();

  constructor(
    private readonly volume: LunVolume,
    private readonly opts: VolumeBackendOptions,
  ) {
    this.size = volume.size;
    this.readOnly = volume.readOnly;
    this.canTrim = !volume.readOnly;
    this.canZero = !volume.readOnly;
    this.canFastZero = !volume.readOnly;
    this.description = opts.description;
    this.blockSize = { minimum: 1, preferred: Math.min(volume.blockSize, 4096 * 16), maximum: 32 * 1024 * 1024 };
    this.contexts = [NBD_META_BASE_ALLOCATION, ...(opts.dirtyBases ?? []).map((b) => NBD_META_QEMU_DIRTY_BITMAP_PREFIX + b)];
  }

  metaContexts(): readonly string[] {
    return this.contexts;
  }

  read(offset: number, length: number): Promise<Buffer> {
    this.count(length);
    return this.volume.read(offset, length);
  }
  readSparse(offset: number, length: number): Promise<ReadPiece[]> {
    this.count(length);
    return this.volume.readSparse(offset, length);
  }
  private count(length: number): void {
    const c = this.opts.counters;
    if (c === undefined) return;
    c.bytesRead += length;
    if (this.readOnly) c.snapshotBytesRead += length;
  }
  write(offset: number, data: Buffer, opts: WriteOptions = {}): Promise<void> {
    if (this.opts.counters) this.opts.counters.bytesWritten += data.length;
    return this.volume.write(offset, data, opts);
  }
  flush(): Promise<void> {
    return this.volume.flush();
  }
  trim(offset: number, length: number, opts: WriteOptions = {}): Promise<void> {
    return this.volume.trim(offset, length, opts);
  }
  zero(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    // mayTrim and fastZero ask nothing more of the store: whole blocks become zero entries either way.
    return this.volume.zero(offset, length, opts);
  }
  async cache(): Promise<void> {
    return undefined;
  }

  async blockStatus(context: string, offset: number, length: number): Promise<StatusExtent[]> {
    if (context === NBD_META_BASE_ALLOCATION) {
      // Bound the work per request; the answer may be shorter than asked.
      const len = Math.min(length, this.size - offset, 4 * 1024 * 1024 * 1024);
      return this.volume.blockStatus(offset, len);
    }
    if (context.startsWith(NBD_META_QEMU_DIRTY_BITMAP_PREFIX) && this.contexts.includes(context)) {
      return dirtyStatus(await this.dirtyExtents(context.slice(NBD_META_QEMU_DIRTY_BITMAP_PREFIX.length)), offset, Math.min(length, this.size - offset));
    }
    throw new InvalidArgumentError(`meta context ${quote(context)} is not available on this export`);
  }

  private async dirtyExtents(base: string): Promise<Extent[]> {
    let list = this.dirtyCache.get(base);
    if (list === undefined) {
      if (!this.opts.dirty) throw new InvalidArgumentError("no dirty bitmaps on this export");
      list = await this.opts.dirty(base);
      this.dirtyCache.set(base, list);
    }
    return list;
  }
}

/** Index of the first extent ending after `offset` (binary search). */
export function firstEndingAfter(list: readonly Extent[], offset: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const e = list[mid];
    if (e !== undefined && e.offset + e.length <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Contiguous clean/dirty status for [offset, offset+length) from a sorted dirty list. */
export function dirtyStatus(dirty: readonly Extent[], offset: number, length: number): StatusExtent[] {
  const stop = offset + length;
  const out: StatusExtent[] = [];
  const push = (lo: number, hi: number, flag: number): void => {
    if (lo >= hi) return;
    const last = out[out.length - 1];
    if (last && last.flag === flag && last.offset + last.length === lo) out[out.length - 1] = { offset: last.offset, length: last.length + hi - lo, flag };
    else out.push({ offset: lo, length: hi - lo, flag });
  };
  let pos = offset;
  for (let i = firstEndingAfter(dirty, offset); i < dirty.length && pos < stop; i++) {
    const e = dirty[i];
    if (e === undefined || e.offset >= stop) break;
    push(pos, Math.max(pos, e.offset), 0);
    const hi = Math.min(stop, e.offset + e.length);
    push(Math.max(pos, e.offset), hi, NBD_STATE_DIRTY);
    pos = Math.max(pos, hi);
    if (out.length >= 100_000) return out;
  }
  push(pos, stop, 0);
  return out;
}
