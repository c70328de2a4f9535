/**
 * A disk image of a backup point as a sparse map: only the chunks that hold
 * data, as (chunk number → hash), sorted by chunk number; every chunk not
 * listed reads as zeros. It is PBS's fixed index made sparse, so its size is
 * set by the data a disk holds, not by the disk's size: a 16 TiB thin disk
 * with 1 GiB written is 16 384 entries (64 KiB chunks), 640 KiB on disk.
 *
 * File `points/<id>/<disk>.map`, little-endian:
 *
 *   0   header: magic "SBXMAP02" (8) | chunk size u32 | zero u32 | disk size u64 | count u64
 *   32  entries, count × 40 bytes: chunk number u64 | hash[32]
 *   …   crc32c u32 of every byte before it
 *
 * Invariants (checked by `decodeDiskMap`): the chunk size is a power of two
 * from 4 KiB to 64 MiB; the disk size ≤ 2^53 − 1; chunk numbers strictly
 * ascending and below ceil(size / chunk size); the file exactly 32 + 40·count
 * + 4 bytes. In memory the map stays in that compact form (a Float64Array of
 * chunk numbers and one Buffer of hashes): lookups are binary searches, and
 * nothing here ever loops over every chunk of the disk.
 */
import { crc32c } from "../../../src/datastore/crc32c.js";
import { CorruptError, InvalidArgumentError } from "../../../src/errors.js";
import type { Extent } from "../../../src/extents/index.js";

export const MAP_MAGIC = "SBXMAP02";
export const MAP_ENTRY_SIZE = 40;
const HEADER = 32;

export function validChunkSize(cs: number): boolean {
  return Number.isInteger(cs) && cs >= 4096 && cs <= 64 * 1024 * 1024 && (cs & (cs - 1)) === 0;
}

export class DiskMap {
  /**
   * @param numbers chunk numbers, strictly ascending
   * @param hashes  32 bytes per entry, in the same order
   * @param label   "point P disk D" for error messages (set when read from a point)
   */
  constructor(
    readonly size: number,
    readonly chunkSize: number,
    readonly numbers: Float64Array,
    readonly hashes: Buffer,
    public label = "image",
  ) {
    if (hashes.length !== numbers.length * 32) throw new InvalidArgumentError("disk map: one 32-byte hash per chunk number");
  }

  static empty(chunkSize: number, size = 0): DiskMap {
    return new DiskMap(size, chunkSize, new Float64Array(0), Buffer.alloc(0));
  }

  /** From (chunk number, hex hash) pairs sorted by chunk number. */
  static fromEntries(size: number, chunkSize: number, entries: readonly (readonly [number, string])[]): DiskMap {
    const numbers = new Float64Array(entries.length);
    const hashes = Buffer.alloc(entries.length * 32);
    entries.forEach(([n, h], i) => {
      numbers[i] = n;
      hashes.write(h, i * 32, "hex");
    });
    return new DiskMap(size, chunkSize, numbers, hashes);
  }

  get count(): number {
    return this.numbers.length;
  }

  get chunkCount(): number {
    return Math.ceil(this.size / this.chunkSize);
  }

  hexAt(k: number): string {
    return this.hashes.toString("hex", k * 32, k * 32 + 32);
  }

  numberAt(k: number): number {
    return this.numbers[k] as number;
  }

  /** The first entry whose chunk number is ≥ n. */
  lowerBound(n: number): number {
    let lo = 0;
    let hi = this.numbers.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.numbers[mid] as number) < n) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Hash of chunk n, or null for a zero chunk. */
  hashOf(n: number): string | null {
    const k = this.lowerBound(n);
    return k < this.numbers.length && this.numbers[k] === n ? this.hexAt(k) : null;
  }

  /** Ranges of [offset, offset+length) that hold stored chunks, clipped to the size, neighbours merged. */
  allocatedIn(offset: number, length: number): Extent[] {
    const cs = this.chunkSize;
    const stop = Math.min(this.size, offset + length);
    const out: { offset: number; length: number }[] = [];
    for (let k = this.lowerBound(Math.floor(offset / cs)); k < this.numbers.length; k++) {
      const start = (this.numbers[k] as number) * cs;
      if (start >= stop) break;
      const from = Math.max(start, offset);
      const to = Math.min(start + cs, stop);
      const last = out[out.length - 1];
      if (last && last.offset + last.length === from) last.length += to - from;
      else out.push({ offset: from, length: to - from });
    }
    return out;
  }

  allocated(): Extent[] {
    return this.allocatedIn(0, this.size);
  }

  /** Every distinct hash the map references. */
  uniqueHashes(into = new Set<string>()): Set<string> {
    for (let k = 0; k < this.numbers.length; k++) into.add(this.hexAt(k));
    return into;
  }
}

export function encodeDiskMap(m: DiskMap): Buffer {
  const b = Buffer.alloc(HEADER + m.count * MAP_ENTRY_SIZE + 4);
  b.write(MAP_MAGIC, 0, "latin1");
  b.writeUInt32LE(m.chunkSize, 8);
  b.writeBigUInt64LE(BigInt(m.size), 16);
  b.writeBigUInt64LE(BigInt(m.count), 24);
  for (let k = 0; k < m.count; k++) {
    const at = HEADER + k * MAP_ENTRY_SIZE;
    b.writeBigUInt64LE(BigInt(m.numberAt(k)), at);
    m.hashes.copy(b, at + 8, k * 32, k * 32 + 32);
  }
  b.writeUInt32LE(crc32c(b.subarray(0, b.length - 4)), b.length - 4);
  return b;
}

export function decodeDiskMap(b: Buffer, what: string): DiskMap {
  if (b.length < HEADER + 4 || b.toString("latin1", 0, 8) !== MAP_MAGIC) throw new CorruptError(`${what}: not a disk map`);
  const cs = b.readUInt32LE(8);
  if (!validChunkSize(cs) || b.readUInt32LE(12) !== 0) throw new CorruptError(`${what}: invalid chunk size ${cs}`);
  const size64 = b.readBigUInt64LE(16);
  const count64 = b.readBigUInt64LE(24);
  if (size64 > BigInt(Number.MAX_SAFE_INTEGER)) throw new CorruptError(`${what}: disk size out of range`);
  if (count64 * BigInt(MAP_ENTRY_SIZE) + BigInt(HEADER + 4) !== BigInt(b.length)) throw new CorruptError(`${what}: ${b.length} bytes for ${count64} entries`);
  if (crc32c(b.subarray(0, b.length - 4)) !== b.readUInt32LE(b.length - 4)) throw new CorruptError(`${what}: checksum mismatch`);
  const size = Number(size64);
  const count = Number(count64);
  const limit = Math.ceil(size / cs);
  const numbers = new Float64Array(count);
  const hashes = Buffer.alloc(count * 32);
  let prev = -1;
  for (let k = 0; k < count; k++) {
    const at = HEADER + k * MAP_ENTRY_SIZE;
    const n64 = b.readBigUInt64LE(at);
    if (n64 >= BigInt(limit)) throw new CorruptError(`${what}: entry ${k}: chunk ${n64} is past the disk's ${limit} chunks`);
    const n = Number(n64);
    if (n <= prev) throw new CorruptError(`${what}: entry ${k}: chunk numbers not strictly ascending`);
    prev = n;
    numbers[k] = n;
    b.copy(hashes, k * 32, at + 8, at + 40);
  }
  return new DiskMap(size, cs, numbers, hashes);
}
