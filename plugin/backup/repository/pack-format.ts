/**
 * The byte layout of a pack file (`packs/ab/<pack id>.pack`), after restic's
 * packs: chunks ("blobs") appended one after another, then a trailer that lists
 * them, so a pack describes itself and the repository index can be rebuilt
 * from the packs alone (`backup check --repair`). Pure codec: no I/O.
 *
 *   0            header: magic "SBXPACK2" (8) | zero (8)
 *   16           blob 0 | blob 1 | … (each a zstd frame, or the raw chunk when flag ZSTD is clear)
 *   E            entries: count × 56 bytes
 *                  hash[32] | offset u64 | stored length u32 | raw length u32 | flags u8 | zero[7]
 *   E + 56·count tail (32 bytes):
 *                  magic "SBXPTRL2" (8) | count u32 | zero u32 | E u64 | crc32c u32 | zero u32
 *
 * Integers little-endian; the CRC-32C covers the entries and tail bytes 0–23.
 * Invariants a decoder enforces (so a damaged trailer is refused, never
 * mis-read): the file is exactly E + 56·count + 32 bytes; blobs are contiguous
 * from byte 16 (offset₀ = 16, offsetᵢ₊₁ = offsetᵢ + storedᵢ, last end = E);
 * lengths are positive and ≤ 64 MiB; a raw blob's stored length equals its
 * raw length; unknown flags and non-zero padding are errors.
 */
import { crc32c } from "../../../src/datastore/crc32c.js";
import { CorruptError } from "../../../src/errors.js";

export const PACK_MAGIC = "SBXPACK2";
export const PACK_TAIL_MAGIC = "SBXPTRL2";
export const PACK_HEADER_SIZE = 16;
export const PACK_ENTRY_SIZE = 56;
export const PACK_TAIL_SIZE = 32;
/** Blob flag: the stored bytes are a zstd frame (clear: the raw chunk, stored because it did not compress). */
export const FLAG_ZSTD = 1;
export const MAX_BLOB = 64 * 1024 * 1024;

export interface PackEntry {
  /** SHA-256 of the raw chunk, 32 bytes. */
  hash: Buffer;
  offset: number;
  stored: number;
  raw: number;
  flags: number;
}

export function encodePackHeader(): Buffer {
  const b = Buffer.alloc(PACK_HEADER_SIZE);
  b.write(PACK_MAGIC, 0, "latin1");
  return b;
}

/** The trailer (entries + tail) for blobs laid out from byte 16 in `entries` order. */
export function encodePackTrailer(entries: readonly PackEntry[]): Buffer {
  const end = entries.reduce((n, e) => n + e.stored, PACK_HEADER_SIZE);
  const b = Buffer.alloc(entries.length * PACK_ENTRY_SIZE + PACK_TAIL_SIZE);
  entries.forEach((e, i) => {
    const at = i * PACK_ENTRY_SIZE;
    e.hash.copy(b, at, 0, 32);
    b.writeBigUInt64LE(BigInt(e.offset), at + 32);
    b.writeUInt32LE(e.stored, at + 40);
    b.writeUInt32LE(e.raw, at + 44);
    b.writeUInt8(e.flags, at + 48);
  });
  const t = entries.length * PACK_ENTRY_SIZE;
  b.write(PACK_TAIL_MAGIC, t, "latin1");
  b.writeUInt32LE(entries.length, t + 8);
  b.writeBigUInt64LE(BigInt(end), t + 16);
  b.writeUInt32LE(crc32c(b.subarray(0, t + 24)), t + 24);
  return b;
}

export interface PackTail {
  count: number;
  entriesOffset: number;
}

/** Checks the last 32 bytes of a pack of `fileSize` bytes; says where the entries are. */
export function parsePackTail(tail: Buffer, fileSize: number, what: string): PackTail {
  if (tail.length !== PACK_TAIL_SIZE || fileSize < PACK_HEADER_SIZE + PACK_TAIL_SIZE) throw new CorruptError(`${what}: too short for a pack (${fileSize} bytes)`);
  if (tail.toString("latin1", 0, 8) !== PACK_TAIL_MAGIC) throw new CorruptError(`${what}: no pack trailer (bad tail magic)`);
  if (tail.readUInt32LE(12) !== 0 || tail.readUInt32LE(28) !== 0) throw new CorruptError(`${what}: non-zero padding in the pack tail`);
  const count = tail.readUInt32LE(8);
  const e = tail.readBigUInt64LE(16);
  if (e > BigInt(Number.MAX_SAFE_INTEGER)) throw new CorruptError(`${what}: entries offset out of range`);
  const entriesOffset = Number(e);
  if (entriesOffset < PACK_HEADER_SIZE || entriesOffset + count * PACK_ENTRY_SIZE + PACK_TAIL_SIZE !== fileSize) throw new CorruptError(`${what}: the trailer (${count} entries at ${entriesOffset}) does not fit a ${fileSize}-byte file`);
  return { count, entriesOffset };
}

/** Checks the entries (read from `tail.entriesOffset`) against the tail's CRC and the layout rules. */
export function parsePackEntries(entries: Buffer, tail: Buffer, info: PackTail, what: string): PackEntry[] {
  if (entries.length !== info.count * PACK_ENTRY_SIZE) throw new CorruptError(`${what}: truncated pack entries`);
  const crc = crc32c(tail.subarray(0, 24), crc32c(entries));
  if (crc !== tail.readUInt32LE(24)) throw new CorruptError(`${what}: pack trailer checksum mismatch`);
  const out: PackEntry[] = [];
  let next = PACK_HEADER_SIZE;
  for (let i = 0; i < info.count; i++) {
    const at = i * PACK_ENTRY_SIZE;
    const off = entries.readBigUInt64LE(at + 32);
    const stored = entries.readUInt32LE(at + 40);
    const raw = entries.readUInt32LE(at + 44);
    const flags = entries.readUInt8(at + 48);
    for (let z = at + 49; z < at + PACK_ENTRY_SIZE; z++) if (entries[z] !== 0) throw new CorruptError(`${what}: entry ${i}: non-zero padding`);
    if (off !== BigInt(next)) throw new CorruptError(`${what}: entry ${i}: offset ${off} breaks the blob sequence (expected ${next})`);
    if (stored === 0 || raw === 0 || stored > MAX_BLOB || raw > MAX_BLOB) throw new CorruptError(`${what}: entry ${i}: invalid lengths ${stored}/${raw}`);
    if ((flags & ~FLAG_ZSTD) !== 0) throw new CorruptError(`${what}: entry ${i}: unknown flags ${flags}`);
    if ((flags & FLAG_ZSTD) === 0 && stored !== raw) throw new CorruptError(`${what}: entry ${i}: a raw blob of ${stored} bytes claims ${raw}`);
    out.push({ hash: Buffer.from(entries.subarray(at, at + 32)), offset: next, stored, raw, flags });
    next += stored;
  }
  if (next !== info.entriesOffset) throw new CorruptError(`${what}: blobs end at ${next}, the entries start at ${info.entriesOffset}`);
  return out;
}

/** A whole pack file in memory: its entries (the blobs are at their offsets in `file`). */
export function decodePackFile(file: Buffer, what: string): PackEntry[] {
  if (file.length < PACK_HEADER_SIZE + PACK_TAIL_SIZE) throw new CorruptError(`${what}: too short for a pack (${file.length} bytes)`);
  if (file.toString("latin1", 0, 8) !== PACK_MAGIC || file.readBigUInt64LE(8) !== 0n) throw new CorruptError(`${what}: bad pack header`);
  const tail = file.subarray(file.length - PACK_TAIL_SIZE);
  const info = parsePackTail(tail, file.length, what);
  return parsePackEntries(file.subarray(info.entriesOffset, info.entriesOffset + info.count * PACK_ENTRY_SIZE), tail, info, what);
}
