/**
 * The byte layout of a repository index file (`index/<ms>-<rand>.idx`): where
 * each chunk lives, like restic's index files. Each commit writes one file
 * listing the chunks it stored; the store loads every file at open, in name
 * order (the name starts with the write time in milliseconds, 13 digits), and
 * the newest location of a hash wins. Pure codec: no I/O.
 *
 *   0   header: magic "SBXIDX02" (8) | count u32 | zero u32
 *   16  entries, count × 72 bytes:
 *         hash[32] | pack id[16] | offset u64 | stored length u32 | raw length u32 | flags u8 | zero[7]
 *   …   crc32c u32 of every byte before it
 *
 * Little-endian. A file is exactly 16 + 72·count + 4 bytes; flags and padding
 * follow pack-format.ts. A damaged index file is refused whole (CRC): the packs
 * still describe themselves, so `check --repair` rebuilds it.
 */
import { crc32c } from "../../../src/datastore/crc32c.js";
import { CorruptError } from "../../../src/errors.js";
import { FLAG_ZSTD, MAX_BLOB, PACK_HEADER_SIZE } from "./pack-format.js";

export const INDEX_MAGIC = "SBXIDX02";
export const INDEX_ENTRY_SIZE = 72;

export interface IndexEntry {
  hash: Buffer;
  /** 16 bytes (32 hex digits in the pack's file name). */
  pack: Buffer;
  offset: number;
  stored: number;
  raw: number;
  flags: number;
}

export function encodeIndex(entries: readonly IndexEntry[]): Buffer {
  const b = Buffer.alloc(16 + entries.length * INDEX_ENTRY_SIZE + 4);
  b.write(INDEX_MAGIC, 0, "latin1");
  b.writeUInt32LE(entries.length, 8);
  entries.forEach((e, i) => {
    const at = 16 + i * INDEX_ENTRY_SIZE;
    e.hash.copy(b, at, 0, 32);
    e.pack.copy(b, at + 32, 0, 16);
    b.writeBigUInt64LE(BigInt(e.offset), at + 48);
    b.writeUInt32LE(e.stored, at + 56);
    b.writeUInt32LE(e.raw, at + 60);
    b.writeUInt8(e.flags, at + 64);
  });
  b.writeUInt32LE(crc32c(b.subarray(0, b.length - 4)), b.length - 4);
  return b;
}

export function decodeIndex(b: Buffer, what: string): IndexEntry[] {
  if (b.length < 20 || b.toString("latin1", 0, 8) !== INDEX_MAGIC) throw new CorruptError(`${what}: not an index file`);
  const count = b.readUInt32LE(8);
  if (b.readUInt32LE(12) !== 0) throw new CorruptError(`${what}: non-zero padding in the header`);
  if (b.length !== 16 + count * INDEX_ENTRY_SIZE + 4) throw new CorruptError(`${what}: ${b.length} bytes for ${count} entries`);
  if (crc32c(b.subarray(0, b.length - 4)) !== b.readUInt32LE(b.length - 4)) throw new CorruptError(`${what}: checksum mismatch`);
  const out: IndexEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = 16 + i * INDEX_ENTRY_SIZE;
    const off = b.readBigUInt64LE(at + 48);
    const stored = b.readUInt32LE(at + 56);
    const raw = b.readUInt32LE(at + 60);
    const flags = b.readUInt8(at + 64);
    for (let z = at + 65; z < at + INDEX_ENTRY_SIZE; z++) if (b[z] !== 0) throw new CorruptError(`${what}: entry ${i}: non-zero padding`);
    if (off < BigInt(PACK_HEADER_SIZE) || off > BigInt(Number.MAX_SAFE_INTEGER)) throw new CorruptError(`${what}: entry ${i}: offset ${off} out of range`);
    if (stored === 0 || raw === 0 || stored > MAX_BLOB || raw > MAX_BLOB || (flags & ~FLAG_ZSTD) !== 0 || ((flags & FLAG_ZSTD) === 0 && stored !== raw)) {
      throw new CorruptError(`${what}: entry ${i}: invalid lengths or flags`);
    }
    out.push({ hash: Buffer.from(b.subarray(at, at + 32)), pack: Buffer.from(b.subarray(at + 32, at + 48)), offset: Number(off), stored, raw, flags });
  }
  return out;
}
