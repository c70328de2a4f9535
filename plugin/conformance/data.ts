/**
 * Test data: deterministic patterns (so a mismatch report can say which write
 * a byte came from) and the dependent-write stamps of the group check.
 *
 * A stamp is one 4 KiB block: "SBCFSTMP" magic, u32 member index, u32 zero,
 * u64 sequence number, then a fill derived from the sequence number.
 */
import { createHash } from "node:crypto";

/** `length` bytes derived from `seed` (SHA-256 in counter mode; never all zero). */
export function pattern(seed: string, length: number): Buffer {
  const out = Buffer.alloc(length);
  let at = 0;
  for (let i = 0; at < length; i++) {
    const h = createHash("sha256").update(`${seed}/${i}`).digest();
    at += h.copy(out, at);
  }
  return out;
}

export const STAMP_SIZE = 4096;
const MAGIC = Buffer.from("SBCFSTMP");

export function stamp(member: number, seq: number): Buffer {
  const b = Buffer.alloc(STAMP_SIZE, seq & 0xff);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(member, 8);
  b.writeUInt32LE(0, 12);
  b.writeBigUInt64LE(BigInt(seq), 16);
  return b;
}

/** The sequence number a block holds, or undefined (never written, or torn). */
export function readStamp(block: Buffer, member: number): number | undefined {
  if (block.length < STAMP_SIZE || !block.subarray(0, 8).equals(MAGIC)) return undefined;
  if (block.readUInt32LE(8) !== member) return undefined;
  const seq = Number(block.readBigUInt64LE(16));
  if (block[STAMP_SIZE - 1] !== (seq & 0xff)) return undefined;
  return seq;
}

export function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}
