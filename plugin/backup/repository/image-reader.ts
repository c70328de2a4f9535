/**
 * A committed disk image read back from the repository: positional reads over
 * its chunk index (an oracle ImageSource, a restore source, and the data behind
 * `backup serve`), and the allocation map (null chunks are holes).
 */
import { InvalidArgumentError } from "../../../src/errors.js";
import type { Extent } from "../../../src/extents/index.js";
import type { DiskIndex } from "./catalog.js";
import type { ChunkStore } from "./chunk-store.js";

export class ImageReader {
  private readonly cache = new Map<number, Promise<Buffer>>();

  constructor(
    private readonly store: ChunkStore,
    readonly index: DiskIndex,
    private readonly cacheChunks = 8,
  ) {}

  get size(): number {
    return this.index.size;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new InvalidArgumentError(`read [${offset}, +${length}) is outside the image (${this.size} bytes)`);
    }
    const out = Buffer.alloc(length);
    const cs = this.index.chunkSize;
    let pos = offset;
    while (pos < offset + length) {
      const i = Math.floor(pos / cs);
      const at = pos - i * cs;
      const len = Math.min(cs - at, offset + length - pos);
      const hash = this.index.chunks[i] ?? null;
      if (hash !== null) (await this.chunk(i, hash)).copy(out, pos - offset, at, at + len);
      pos += len;
    }
    return out;
  }

  /** Ranges that hold stored (non-zero) chunks, clipped to the size, adjacent chunks merged. */
  allocated(): Extent[] {
    const cs = this.index.chunkSize;
    const out: Extent[] = [];
    this.index.chunks.forEach((h, i) => {
      if (h === null) return;
      const off = i * cs;
      const len = Math.min(cs, this.size - off);
      const last = out[out.length - 1];
      if (last && last.offset + last.length === off) out[out.length - 1] = { offset: last.offset, length: last.length + len };
      else out.push({ offset: off, length: len });
    });
    return out;
  }

  private chunk(i: number, hash: string): Promise<Buffer> {
    const hit = this.cache.get(i);
    if (hit) return hit;
    const p = this.store.get(hash);
    this.cache.set(i, p);
    if (this.cache.size > this.cacheChunks) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    p.catch(() => this.cache.delete(i));
    return p;
  }
}
