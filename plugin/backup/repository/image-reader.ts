/**
 * A committed disk image read back from the repository: positional reads over
 * its disk map (an oracle ImageSource, a restore source, and the data behind
 * `backup serve`), and its allocation (chunks not in the map are holes).
 *
 * Every chunk read is verified by the store; a bad one fails the read with
 * CorruptError naming the point and disk (the map's label), the byte range of
 * the chunk, and the chunk (hash, pack, offset). A read costs O(log entries +
 * chunks in the range); allocation queries cost O(log entries + entries in
 * the range), never O(disk size).
 */
import { InvalidArgumentError } from "../../../src/errors.js";
import type { Extent } from "../../../src/extents/index.js";
import type { ChunkStore } from "./chunk-store.js";
import type { DiskMap } from "./disk-map.js";

/** Chunks one read fetches at once. */
const READ_AHEAD = 16;

export class ImageReader {
  private readonly cache = new Map<number, Promise<Buffer>>();

  constructor(
    private readonly store: ChunkStore,
    readonly map: DiskMap,
    private readonly cacheChunks = 8,
  ) {}

  get size(): number {
    return this.map.size;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new InvalidArgumentError(`read [${offset}, +${length}) is outside the image (${this.size} bytes)`);
    }
    const out = Buffer.alloc(length);
    const pieces: { i: number; hash: string; pos: number; at: number; len: number }[] = [];
    for (const e of this.map.allocatedIn(offset, length)) {
      const cs = this.map.chunkSize;
      for (let pos = e.offset; pos < e.offset + e.length; ) {
        const i = Math.floor(pos / cs);
        const at = pos - i * cs;
        const len = Math.min(cs - at, e.offset + e.length - pos);
        const hash = this.map.hashOf(i);
        if (hash !== null) pieces.push({ i, hash, pos, at, len });
        pos += len;
      }
    }
    // Chunks are fetched side by side (the store's codec verifies several at once), at most READ_AHEAD at a time.
    let next = 0;
    const fetcher = async (): Promise<void> => {
      for (let k = next++; k < pieces.length; k = next++) {
        const p = pieces[k] as (typeof pieces)[number];
        (await this.chunk(p.i, p.hash)).copy(out, p.pos - offset, p.at, p.at + p.len);
      }
    };
    const results = await Promise.allSettled(Array.from({ length: Math.min(READ_AHEAD, pieces.length) }, fetcher));
    for (const r of results) if (r.status === "rejected") throw r.reason;
    return out;
  }

  /** Ranges that hold stored (non-zero) chunks, clipped to the size, adjacent chunks merged. */
  allocated(): Extent[] {
    return this.map.allocated();
  }

  allocatedIn(offset: number, length: number): Extent[] {
    return this.map.allocatedIn(offset, length);
  }

  private chunk(i: number, hash: string): Promise<Buffer> {
    const hit = this.cache.get(i);
    if (hit) return hit;
    const cs = this.map.chunkSize;
    const p = this.store.get(hash, `${this.map.label} bytes [${i * cs}, ${Math.min((i + 1) * cs, this.size)})`);
    this.cache.set(i, p);
    if (this.cache.size > this.cacheChunks) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    p.catch(() => this.cache.delete(i));
    return p;
  }
}
