/**
 * Builds one disk image of a new backup point on top of the previous point's
 * disk map: incremental forever. The image starts as the base map (nothing
 * read) and takes writes, zeroing and resizes; a chunk is loaded from the
 * store (verified: a bad base chunk fails the write with CorruptError) only
 * when a write touches part of it, and a chunk written whole is never loaded.
 * `finish()` stores the touched chunks and returns the new map: untouched
 * chunks keep their hashes, so they are shared.
 *
 *   base map     {0:h0, 1:h1, 2:h2, 4:h4}      (3 = zero chunk, not listed)
 *   writes              ████     ██
 *   new map      {0:h0, 1:h1', 2:h2, 3:h3', 4:h4}   only h1', h3' stored
 *
 * Cost is O(base entries + chunks touched), never O(disk size): changes sit in
 * an overlay (chunk number → hash or null) over the immutable base, and a
 * shrink only lowers `floor`, below which base entries stay valid. Touched
 * chunks are held in memory, at most `maxDirty`; beyond that the oldest are
 * stored early (a later write reloads them by hash). Bytes past `size` in the
 * last chunk are kept zero, so a grow reads zeros. Operations run one at a
 * time in call order (an internal queue), so callers may issue them
 * concurrently.
 *
 * A write that covers a whole chunk hands it to the store at once and goes
 * on: up to `maxStoring` puts run behind the queue (the store hashes and
 * compresses them on worker threads), so reading the source and storing
 * overlap instead of taking turns. A put's hash lands in the overlay only if
 * nothing changed that chunk since (a per-chunk ticket); an operation that
 * needs the chunk's bytes again waits for its put and reloads it by hash. The
 * first failed put fails the next operation and `finish()`.
 */
import { InvalidArgumentError } from "../../../src/errors.js";
import type { ChunkStore } from "./chunk-store.js";
import { DiskMap } from "./disk-map.js";

/** Where a copy writes: the repository image, a raw file, an NBD export. */
export interface ImageSink {
  readonly size: number;
  write(offset: number, data: Buffer): Promise<void>;
  /** Make [offset, offset+length) read as zeros. */
  zero(offset: number, length: number): Promise<void>;
  /** Set the size; a grow reads as zeros. */
  resize(size: number): Promise<void>;
}

/** Chunks handed to the store per putMany call. */
const BATCH = 64;

export class ImageBuilder implements ImageSink {
  private readonly base: DiskMap;
  /** Chunk number → hash (null = zero) for every chunk changed since the base. */
  private readonly overlay = new Map<number, string | null>();
  private readonly dirty = new Map<number, Buffer>();
  /** Base entries at or past this chunk number were dropped by a shrink. */
  private floor: number;
  private bytes: number;
  private queue: Promise<unknown> = Promise.resolve();
  /** Chunk number → its put in flight (the ticket is the promise itself). */
  private readonly storing = new Map<number, Promise<void>>();
  private readonly storingSpace: (() => void)[] = [];
  private failure: Error | undefined;
  /** Bytes written or zeroed through this builder. */
  bytesWritten = 0;

  constructor(
    private readonly store: ChunkStore,
    base: DiskMap | undefined,
    private readonly maxDirty = 64,
    private readonly maxStoring = 64,
  ) {
    if (base !== undefined && base.chunkSize !== store.chunkSize) throw new InvalidArgumentError(`base map chunk size ${base.chunkSize} differs from the repository's ${store.chunkSize}`);
    this.base = base ?? DiskMap.empty(store.chunkSize);
    this.bytes = this.base.size;
    this.floor = this.base.chunkCount;
  }

  get size(): number {
    return this.bytes;
  }

  private get cs(): number {
    return this.store.chunkSize;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(() => {
      if (this.failure !== undefined) throw this.failure;
      return fn();
    });
    this.queue = p.catch(() => undefined);
    return p;
  }

  write(offset: number, data: Buffer): Promise<void> {
    return this.serial(async () => {
      this.check(offset, data.length);
      await this.apply(offset, data.length, (buf, at, from, len) => data.copy(buf, at, from, from + len));
      this.bytesWritten += data.length;
    });
  }

  zero(offset: number, length: number): Promise<void> {
    return this.serial(async () => {
      this.check(offset, length);
      await this.apply(offset, length, (buf, at, _from, len) => buf.fill(0, at, at + len), true);
      this.bytesWritten += length;
    });
  }

  resize(size: number): Promise<void> {
    return this.serial(async () => {
      if (!Number.isSafeInteger(size) || size < 0) throw new InvalidArgumentError(`invalid image size ${size}`);
      const n = Math.ceil(size / this.cs);
      if (size < this.bytes) {
        for (const i of [...this.dirty.keys()]) if (i >= n) this.dirty.delete(i);
        for (const i of [...this.storing.keys()]) if (i >= n) this.storing.delete(i);
        for (const i of [...this.overlay.keys()]) if (i >= n) this.overlay.delete(i);
        this.floor = Math.min(this.floor, n);
        const tail = size % this.cs;
        this.bytes = size;
        if (tail !== 0) (await this.load(n - 1)).fill(0, tail);
      }
      this.bytes = size;
    });
  }

  /** Stores every touched chunk and returns the image's map. The builder is spent afterwards. */
  finish(): Promise<DiskMap> {
    return this.serial(async () => {
      const pending = [...this.dirty.keys()];
      for (let at = 0; at < pending.length; at += BATCH) await this.evict(pending.slice(at, at + BATCH));
      await Promise.all(this.storing.values());
      if (this.failure !== undefined) throw this.failure;
      return this.merged();
    });
  }

  /** Base entries below the floor and not overridden, plus the overlay's non-zero entries: one sorted merge. */
  private merged(): DiskMap {
    const limit = Math.ceil(this.bytes / this.cs);
    const over = [...this.overlay.entries()].filter(([i, h]) => h !== null && i < limit).sort((a, b) => a[0] - b[0]) as [number, string][];
    const stop = Math.min(this.floor, limit);
    const numbers: number[] = [];
    const parts: Buffer[] = [];
    let o = 0;
    const pushOver = (): void => {
      const [i, h] = over[o++] as [number, string];
      numbers.push(i);
      parts.push(Buffer.from(h, "hex"));
    };
    for (let k = 0; k < this.base.count; k++) {
      const n = this.base.numberAt(k);
      if (n >= stop) break;
      while (o < over.length && (over[o] as [number, string])[0] < n) pushOver();
      if (this.overlay.has(n)) continue;
      numbers.push(n);
      parts.push(this.base.hashes.subarray(k * 32, k * 32 + 32));
    }
    while (o < over.length) pushOver();
    return new DiskMap(this.bytes, this.cs, Float64Array.from(numbers), Buffer.concat(parts));
  }

  private hashOf(i: number): string | null {
    if (this.overlay.has(i)) return this.overlay.get(i) ?? null;
    return i < this.floor ? this.base.hashOf(i) : null;
  }

  private check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.bytes) {
      throw new InvalidArgumentError(`image range [${offset}, +${length}) is outside the image (${this.bytes} bytes)`);
    }
  }

  private async apply(offset: number, length: number, fn: (buf: Buffer, at: number, from: number, len: number) => void, zeroing = false): Promise<void> {
    const lastChunk = Math.ceil(this.bytes / this.cs) - 1;
    let pos = offset;
    while (pos < offset + length) {
      const i = Math.floor(pos / this.cs);
      const at = pos - i * this.cs;
      const len = Math.min(this.cs - at, offset + length - pos);
      const whole = at === 0 && (len === this.cs || (i * this.cs + len >= this.bytes && i === lastChunk));
      if (zeroing && whole) {
        this.dirty.delete(i);
        this.storing.delete(i);
        this.overlay.set(i, null);
      } else if (!zeroing && whole && len === this.cs) {
        // The write covers the chunk: store it now, beside the next operations.
        this.dirty.delete(i);
        const buf = Buffer.allocUnsafeSlow(this.cs);
        fn(buf, 0, pos - offset, len);
        await this.storeBehind(i, buf);
      } else {
        await this.settle(i);
        if (zeroing && this.hashOf(i) === null && !this.dirty.has(i)) {
          // Already zero.
        } else {
          const buf = whole && !this.dirty.has(i) ? await this.fresh(i) : await this.load(i);
          fn(buf, at, pos - offset, len);
        }
      }
      pos += len;
    }
  }

  /** Puts chunk i without waiting for it; waits only while `maxStoring` puts are already running. */
  private async storeBehind(i: number, buf: Buffer): Promise<void> {
    while (this.storing.size >= this.maxStoring) await new Promise<void>((r) => this.storingSpace.push(r));
    const ticket: Promise<void> = this.store.put(buf).then(
      (hash) => {
        if (this.storing.get(i) === ticket) this.overlay.set(i, hash);
      },
      (e: unknown) => {
        this.failure ??= e instanceof Error ? e : new Error(String(e));
      },
    ).finally(() => {
      if (this.storing.get(i) === ticket) this.storing.delete(i);
      this.storingSpace.shift()?.();
    });
    this.storing.set(i, ticket);
  }

  /** Waits for chunk i's put, if one runs, so its hash is in the overlay. */
  private async settle(i: number): Promise<void> {
    const p = this.storing.get(i);
    if (p !== undefined) await p;
    if (this.failure !== undefined) throw this.failure;
  }

  private async fresh(i: number): Promise<Buffer> {
    await this.makeRoom();
    const buf = Buffer.alloc(this.cs);
    this.dirty.set(i, buf);
    return buf;
  }

  private async load(i: number): Promise<Buffer> {
    await this.settle(i);
    const have = this.dirty.get(i);
    if (have) return have;
    await this.makeRoom();
    const hash = this.hashOf(i);
    const where = `${this.base.label} bytes [${i * this.cs}, ${(i + 1) * this.cs}) (base of a new image)`;
    const buf = Buffer.from(await this.store.get(hash, where));
    this.dirty.set(i, buf);
    return buf;
  }

  private async makeRoom(): Promise<void> {
    if (this.dirty.size < this.maxDirty) return;
    // Store the oldest quarter in one batch, so the store can prepare them in parallel.
    const n = Math.max(1, this.dirty.size - this.maxDirty + 1, this.maxDirty >> 2);
    await this.evict([...this.dirty.keys()].slice(0, n));
  }

  private async evict(ids: readonly number[]): Promise<void> {
    const bufs: Buffer[] = [];
    const keep: number[] = [];
    for (const i of ids) {
      const b = this.dirty.get(i);
      if (b === undefined) continue;
      this.dirty.delete(i);
      bufs.push(b);
      keep.push(i);
    }
    const hashes = await this.store.putMany(bufs);
    keep.forEach((i, k) => this.overlay.set(i, hashes[k] ?? null));
  }
}
