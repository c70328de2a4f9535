/**
 * Builds one disk image of a new backup point on top of the previous point's
 * index: incremental forever. The image starts as the base (its chunk list,
 * nothing read) and takes writes, zeroing and resizes; a chunk is loaded from
 * the store only when a write touches part of it, and a chunk written whole is
 * never loaded. `finish()` hashes and stores the touched chunks and returns the
 * new index: untouched chunks keep their hashes, so they are shared.
 *
 *   base index   [h0][h1][h2][--][h4]          (-- = zero chunk)
 *   writes              ████     ██
 *   new index    [h0][h1'][h2][h3'][h4]        only h1', h3' stored
 *
 * Touched chunks are held in memory, at most `maxDirty` of them; beyond that the
 * oldest is stored early (a later write to it reloads it by hash). The invariant
 * "bytes past `size` in the last chunk are zero" keeps a grow reading zeros.
 * Operations run one at a time in call order (an internal queue), so callers may
 * issue them concurrently.
 */
import { InvalidArgumentError } from "../../../src/errors.js";
import type { DiskIndex } from "./catalog.js";
import type { ChunkStore } from "./chunk-store.js";

/** Where a copy writes: the repository image, a raw file, an NBD export. */
export interface ImageSink {
  readonly size: number;
  write(offset: number, data: Buffer): Promise<void>;
  /** Make [offset, offset+length) read as zeros. */
  zero(offset: number, length: number): Promise<void>;
  /** Set the size; a grow reads as zeros. */
  resize(size: number): Promise<void>;
}

export class ImageBuilder implements ImageSink {
  private chunks: (string | null)[];
  private readonly dirty = new Map<number, Buffer>();
  private bytes: number;
  private queue: Promise<unknown> = Promise.resolve();
  /** Bytes written or zeroed through this builder. */
  bytesWritten = 0;

  constructor(
    private readonly store: ChunkStore,
    base: DiskIndex | undefined,
    private readonly maxDirty = 64,
  ) {
    if (base !== undefined && base.chunkSize !== store.chunkSize) throw new InvalidArgumentError(`base index chunk size ${base.chunkSize} differs from the repository's ${store.chunkSize}`);
    this.chunks = base ? [...base.chunks] : [];
    this.bytes = base ? base.size : 0;
  }

  get size(): number {
    return this.bytes;
  }

  private get cs(): number {
    return this.store.chunkSize;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn);
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
        for (let i = n; i < this.chunks.length; i++) this.dirty.delete(i);
        this.chunks.length = n;
        const tail = size % this.cs;
        if (tail !== 0) {
          const buf = await this.load(n - 1);
          buf.fill(0, tail);
        }
      } else {
        while (this.chunks.length < n) this.chunks.push(null);
      }
      this.bytes = size;
    });
  }

  /** Stores every touched chunk and returns the image's index. The builder is spent afterwards. */
  finish(): Promise<DiskIndex> {
    return this.serial(async () => {
      // Chunks are independent: store them several at a time (each store is a write + fsync + rename).
      const pending = [...this.dirty.keys()];
      const worker = async (): Promise<void> => {
        for (let i = pending.shift(); i !== undefined; i = pending.shift()) await this.evict(i);
      };
      await Promise.all(Array.from({ length: Math.min(8, pending.length) }, worker));
      return { size: this.bytes, chunkSize: this.cs, chunks: [...this.chunks] };
    });
  }

  private check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.bytes) {
      throw new InvalidArgumentError(`image range [${offset}, +${length}) is outside the image (${this.bytes} bytes)`);
    }
  }

  private async apply(offset: number, length: number, fn: (buf: Buffer, at: number, from: number, len: number) => void, zeroing = false): Promise<void> {
    let pos = offset;
    while (pos < offset + length) {
      const i = Math.floor(pos / this.cs);
      const at = pos - i * this.cs;
      const len = Math.min(this.cs - at, offset + length - pos);
      const whole = at === 0 && (len === this.cs || (i * this.cs + len >= this.bytes && i === this.chunks.length - 1));
      if (zeroing && whole) {
        this.dirty.delete(i);
        this.chunks[i] = null;
      } else if (zeroing && this.chunks[i] === null && !this.dirty.has(i)) {
        // Already zero.
      } else {
        const buf = whole && !this.dirty.has(i) ? await this.fresh(i) : await this.load(i);
        fn(buf, at, pos - offset, len);
      }
      pos += len;
    }
  }

  private async fresh(i: number): Promise<Buffer> {
    await this.makeRoom();
    const buf = Buffer.alloc(this.cs);
    this.dirty.set(i, buf);
    return buf;
  }

  private async load(i: number): Promise<Buffer> {
    const have = this.dirty.get(i);
    if (have) return have;
    await this.makeRoom();
    const buf = Buffer.from(await this.store.get(this.chunks[i] ?? null));
    this.dirty.set(i, buf);
    return buf;
  }

  private async makeRoom(): Promise<void> {
    while (this.dirty.size >= this.maxDirty) {
      const oldest = this.dirty.keys().next().value;
      if (oldest === undefined) return;
      await this.evict(oldest);
    }
  }

  private async evict(i: number): Promise<void> {
    const buf = this.dirty.get(i);
    if (!buf) return;
    this.dirty.delete(i);
    this.chunks[i] = await this.store.put(buf);
  }
}
