/**
 * Dependent-write stamps: the contents of every block the workload writes.
 *
 * A stamp is one 4 KiB block (STAMP_SIZE), little-endian:
 *
 *   0    8  magic "SBXSTMP1"
 *   8    4  CRC-32C of the whole block with this field zeroed
 *   12   2  descriptor length D
 *   14   2  disk index (into the descriptor's disk list)
 *   16   8  sequence number (1, 2, … along the chain)
 *   24   8  byte offset of this block in its disk
 *   32   4  chain id = CRC-32C of the descriptor
 *   36   4  zero
 *   40   D  the workload descriptor (below)
 *   40+D …  fill: Prng(chainId ^ seq ^ offset-mix) bytes up to the end of the block
 *
 * Workload descriptor (so the oracle can regenerate the chain from images alone):
 *   u16 version (1) | u16 disk count | u32 seed | u8 vm-name length | vm name
 *   then per disk: u8 id length | id | u8 kind (1 vmdk, 2 rdm) | u64 size | u64 max size
 *
 * A block that is neither all zeros nor a stamp whose CRC and regenerated fill both
 * check is "torn": an interrupted write, or something that is not ours.
 */
import { CorruptError, InvalidArgumentError, quote } from "../errors.js";
import { ByteReader, ByteWriter } from "../datastore/byte-codec.js";
import { crc32c } from "../datastore/crc32c.js";
import { Prng } from "./prng.js";

export const STAMP_SIZE = 4096;
export const STAMP_MAGIC = Buffer.from("SBXSTMP1", "latin1");
const HEADER = 40;
const MAX_DESCRIPTOR = 2048;

export type DiskKind = "vmdk" | "rdm";

export interface WorkloadDisk {
  /** Stable id, e.g. "scsi0:0" or the RDM's NAA id; at most 64 bytes. */
  id: string;
  kind: DiskKind;
  /** Bytes, a multiple of STAMP_SIZE. */
  size: number;
  /** VMDKs may grow up to this (default: size). */
  maxSize?: number;
}

export interface WorkloadSpec {
  seed: number;
  vm: string;
  disks: WorkloadDisk[];
}

export interface Stamp {
  chainId: number;
  diskIndex: number;
  seq: number;
  offset: number;
  /** The encoded descriptor (decode with decodeDescriptor). */
  descriptor: Buffer;
}

export type BlockContent = { kind: "zero" } | { kind: "stamp"; stamp: Stamp } | { kind: "torn"; reason: string };

export function encodeDescriptor(spec: WorkloadSpec): Buffer {
  const w = new ByteWriter();
  const vm = Buffer.from(spec.vm, "utf8");
  if (vm.length > 255) throw new InvalidArgumentError("vm name longer than 255 bytes");
  if (spec.disks.length === 0 || spec.disks.length > 64) throw new InvalidArgumentError("a workload needs 1 to 64 disks");
  w.u16(1).u16(spec.disks.length).u32(spec.seed >>> 0).u8(vm.length).bytes(vm);
  for (const d of spec.disks) {
    const id = Buffer.from(d.id, "utf8");
    if (id.length === 0 || id.length > 64) throw new InvalidArgumentError(`disk id ${quote(d.id)} must be 1 to 64 bytes`);
    if (d.size <= 0 || d.size % STAMP_SIZE !== 0) throw new InvalidArgumentError(`disk ${d.id}: size ${d.size} is not a positive multiple of ${STAMP_SIZE}`);
    const max = d.maxSize ?? d.size;
    if (max < d.size || max % STAMP_SIZE !== 0) throw new InvalidArgumentError(`disk ${d.id}: max size ${max} must be a multiple of ${STAMP_SIZE} and at least its size`);
    if (d.kind === "rdm" && max !== d.size) throw new InvalidArgumentError(`disk ${d.id}: an RDM cannot grow`);
    w.u8(id.length).bytes(id).u8(d.kind === "vmdk" ? 1 : 2).u64(d.size).u64(max);
  }
  const out = w.finish();
  if (out.length > MAX_DESCRIPTOR) throw new InvalidArgumentError(`workload descriptor is ${out.length} bytes; at most ${MAX_DESCRIPTOR} fit in a stamp`);
  if (new Set(spec.disks.map((d) => d.id)).size !== spec.disks.length) throw new InvalidArgumentError("disk ids must be unique");
  return out;
}

export function decodeDescriptor(buf: Buffer): WorkloadSpec {
  const r = new ByteReader(buf, "workload descriptor");
  const version = r.u16();
  if (version !== 1) throw new CorruptError(`workload descriptor version ${version} is not supported`);
  const n = r.u16();
  const seed = r.u32();
  const vm = r.bytes(r.u8()).toString("utf8");
  const disks: WorkloadDisk[] = [];
  for (let i = 0; i < n; i++) {
    const id = r.bytes(r.u8()).toString("utf8");
    const code = r.u8();
    if (code !== 1 && code !== 2) throw new CorruptError(`workload descriptor: disk ${id} has unknown kind ${code}`);
    const size = r.u64();
    const maxSize = r.u64();
    disks.push({ id, kind: code === 1 ? "vmdk" : "rdm", size, maxSize });
  }
  if (r.remaining !== 0) throw new CorruptError("workload descriptor: trailing bytes");
  return { seed, vm, disks };
}

function fillSeed(chainId: number, diskIndex: number, seq: number, offset: number): number {
  const blk = offset / STAMP_SIZE;
  return (chainId ^ Math.imul(seq >>> 0, 0x9e3779b1) ^ Math.imul((seq / 2 ** 32) >>> 0, 0x7feb352d) ^ Math.imul(blk >>> 0, 0x85ebca6b) ^ Math.imul(diskIndex + 1, 0xc2b2ae35)) >>> 0;
}

export function encodeStamp(descriptor: Buffer, diskIndex: number, seq: number, offset: number): Buffer {
  if (offset % STAMP_SIZE !== 0) throw new InvalidArgumentError(`stamp offset ${offset} is not a multiple of ${STAMP_SIZE}`);
  const chainId = crc32c(descriptor);
  const buf = Buffer.alloc(STAMP_SIZE);
  STAMP_MAGIC.copy(buf, 0);
  buf.writeUInt16LE(descriptor.length, 12);
  buf.writeUInt16LE(diskIndex, 14);
  buf.writeBigUInt64LE(BigInt(seq), 16);
  buf.writeBigUInt64LE(BigInt(offset), 24);
  buf.writeUInt32LE(chainId, 32);
  descriptor.copy(buf, HEADER);
  new Prng(fillSeed(chainId, diskIndex, seq, offset)).fill(buf.subarray(HEADER + descriptor.length));
  buf.writeUInt32LE(crc32c(buf), 8);
  return buf;
}

function isZero(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i += 8) {
    if (i + 8 <= buf.length ? buf.readBigUInt64LE(i) !== 0n : buf.subarray(i).some((b) => b !== 0)) return false;
  }
  return true;
}

/** What one STAMP_SIZE block of an image holds. */
export function classifyBlock(block: Buffer): BlockContent {
  if (block.length !== STAMP_SIZE) throw new InvalidArgumentError(`a stamp block is ${STAMP_SIZE} bytes, got ${block.length}`);
  if (isZero(block)) return { kind: "zero" };
  if (!block.subarray(0, 8).equals(STAMP_MAGIC)) return { kind: "torn", reason: "no stamp header" };
  const crc = block.readUInt32LE(8);
  const copy = Buffer.from(block);
  copy.writeUInt32LE(0, 8);
  if (crc32c(copy) !== crc) return { kind: "torn", reason: "stamp checksum mismatch" };
  const dlen = block.readUInt16LE(12);
  if (dlen > MAX_DESCRIPTOR) return { kind: "torn", reason: "stamp descriptor too long" };
  const diskIndex = block.readUInt16LE(14);
  const seqBig = block.readBigUInt64LE(16);
  const offBig = block.readBigUInt64LE(24);
  if (seqBig > BigInt(Number.MAX_SAFE_INTEGER) || offBig > BigInt(Number.MAX_SAFE_INTEGER)) return { kind: "torn", reason: "stamp field out of range" };
  const seq = Number(seqBig);
  const offset = Number(offBig);
  const chainId = block.readUInt32LE(32);
  const descriptor = Buffer.from(block.subarray(HEADER, HEADER + dlen));
  if (crc32c(descriptor) !== chainId) return { kind: "torn", reason: "stamp chain id mismatch" };
  const fill = Buffer.alloc(STAMP_SIZE - HEADER - dlen);
  new Prng(fillSeed(chainId, diskIndex, seq, offset)).fill(fill);
  if (!fill.equals(block.subarray(HEADER + dlen))) return { kind: "torn", reason: "stamp fill mismatch" };
  return { kind: "stamp", stamp: { chainId, diskIndex, seq, offset, descriptor } };
}
