/**
 * The on-disk format of the datastore file system: pure encoders and decoders
 * for the superblock and the metadata blob. See docs/datastore-format.md.
 *
 *   byte 0        superblock slot 0  (512 bytes; even generations)
 *   byte 4096     superblock slot 1  (512 bytes; odd generations)
 *   byte 8192…    (rounded up to the block size) data and metadata blocks
 *
 * The superblock names the metadata blob (the file table plus the allocation map)
 * by its block runs, length and CRC-32C. The blob is written copy-on-write to
 * free blocks; a commit is the write of the next superblock into the other slot.
 */
import { CorruptError, InvalidArgumentError, quote } from "../errors.js";
import { ByteReader, ByteWriter } from "./byte-codec.js";
import { crc32c } from "./crc32c.js";

export const FS_MAGIC = Buffer.from("SBXDSFS1", "latin1");
export const META_MAGIC = Buffer.from("SBXMETA1", "latin1");
export const FORMAT_VERSION = 1;
export const SUPERBLOCK_SIZE = 512;
export const SUPERBLOCK_OFFSETS = [0, 4096] as const;
/** Bytes at the start of the device that hold the two superblock slots. */
export const RESERVED_BYTES = 8192;
export const DEFAULT_BLOCK_SIZE = 64 * 1024;
export const MIN_BLOCK_SIZE = 512;
export const MAX_BLOCK_SIZE = 16 * 1024 * 1024;
/** Metadata block runs that fit in a superblock. */
export const MAX_META_RUNS = 22;
export const ROOT_INODE = 1;
export const MAX_NAME_BYTES = 255;
const LABEL_BYTES = 64;
const RUNS_AT = 136;
const CRC_AT = SUPERBLOCK_SIZE - 4;

/** `count` consecutive blocks starting at block `start`. */
export interface BlockRun {
  readonly start: number;
  readonly count: number;
}

/** One mapped run of a file: file bytes [fileOffset, +length) live at LUN bytes [lunOffset, +length). */
export interface FileExtent {
  readonly fileOffset: number;
  readonly lunOffset: number;
  readonly length: number;
}

export interface Superblock {
  version: number;
  blockSize: number;
  blockCount: number;
  generation: number;
  /** 32 lowercase hex digits. */
  uuid: string;
  label: string;
  metaLength: number;
  metaChecksum: number;
  metaRuns: BlockRun[];
}

export type InodeKind = "dir" | "file";

export interface InodeRecord {
  inode: number;
  /** The root's parent is itself. */
  parent: number;
  kind: InodeKind;
  name: string;
  size: number;
  mtimeMs: number;
  /** Block-aligned, sorted by fileOffset, non-overlapping. Empty for directories. */
  extents: FileExtent[];
}

export interface MetaImage {
  generation: number;
  blockSize: number;
  nextInode: number;
  /** The allocation map: sorted, coalesced runs of allocated blocks (reserved, metadata and file data). */
  alloc: BlockRun[];
  entries: InodeRecord[];
}

export function checkBlockSize(blockSize: number): void {
  if (!Number.isInteger(blockSize) || blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw new InvalidArgumentError(`block size must be a power of two between ${MIN_BLOCK_SIZE} and ${MAX_BLOCK_SIZE}, got ${blockSize}`);
  }
}

/** Blocks [0, reservedBlocks) hold the superblock slots. */
export function reservedBlocks(blockSize: number): number {
  return Math.ceil(RESERVED_BYTES / blockSize);
}

export function superblockSlot(generation: number): 0 | 1 {
  return generation % 2 === 0 ? 0 : 1;
}

export function encodeSuperblock(sb: Superblock): Buffer {
  if (sb.metaRuns.length > MAX_META_RUNS) throw new InvalidArgumentError(`metadata spans ${sb.metaRuns.length} runs; at most ${MAX_META_RUNS} fit in a superblock`);
  const label = Buffer.from(sb.label, "utf8");
  if (label.length > LABEL_BYTES) throw new InvalidArgumentError(`label is longer than ${LABEL_BYTES} bytes`);
  if (!/^[0-9a-f]{32}$/.test(sb.uuid)) throw new InvalidArgumentError(`uuid must be 32 hex digits, got ${quote(sb.uuid)}`);
  const w = new ByteWriter();
  w.bytes(FS_MAGIC).u32(sb.version).u32(SUPERBLOCK_SIZE).u32(sb.blockSize).u32(sb.metaRuns.length);
  w.u64(sb.blockCount).u64(sb.generation).u64(sb.metaLength).u32(sb.metaChecksum).u32(0);
  w.bytes(Buffer.from(sb.uuid, "hex")).bytes(label).zeros(LABEL_BYTES - label.length);
  for (const r of sb.metaRuns) w.u64(r.start).u64(r.count);
  w.zeros(SUPERBLOCK_SIZE - w.length);
  const out = w.finish();
  out.writeUInt32LE(crc32c(out.subarray(0, CRC_AT)), CRC_AT);
  return out;
}

/** Decodes one superblock slot; throws CorruptError when it is not a valid superblock. */
export function decodeSuperblock(buf: Buffer, where: string): Superblock {
  if (buf.length < SUPERBLOCK_SIZE) throw new CorruptError(`${where}: short superblock`);
  if (!buf.subarray(0, 8).equals(FS_MAGIC)) throw new CorruptError(`${where}: bad magic (not a sanbox datastore)`);
  if (buf.readUInt32LE(CRC_AT) !== crc32c(buf.subarray(0, CRC_AT))) throw new CorruptError(`${where}: checksum mismatch`);
  const r = new ByteReader(buf.subarray(0, SUPERBLOCK_SIZE), where);
  r.skip(8);
  const version = r.u32();
  if (version !== FORMAT_VERSION) throw new CorruptError(`${where}: unsupported format version ${version}`);
  const sbSize = r.u32();
  if (sbSize !== SUPERBLOCK_SIZE) throw new CorruptError(`${where}: superblock size ${sbSize}, expected ${SUPERBLOCK_SIZE}`);
  const blockSize = r.u32();
  try {
    checkBlockSize(blockSize);
  } catch {
    throw new CorruptError(`${where}: invalid block size ${blockSize}`);
  }
  const runCount = r.u32();
  if (runCount > MAX_META_RUNS) throw new CorruptError(`${where}: ${runCount} metadata runs`);
  const blockCount = r.u64();
  const generation = r.u64();
  const metaLength = r.u64();
  const metaChecksum = r.u32();
  r.skip(4);
  const uuid = r.bytes(16).toString("hex");
  const labelRaw = r.bytes(LABEL_BYTES);
  const nul = labelRaw.indexOf(0);
  const label = labelRaw.subarray(0, nul < 0 ? LABEL_BYTES : nul).toString("utf8");
  const metaRuns: BlockRun[] = [];
  if (r.offset !== RUNS_AT) throw new CorruptError(`${where}: layout error`);
  for (let i = 0; i < runCount; i++) metaRuns.push({ start: r.u64(), count: r.u64() });
  return { version, blockSize, blockCount, generation, uuid, label, metaLength, metaChecksum, metaRuns };
}

const KIND_CODE: Record<InodeKind, number> = { dir: 1, file: 2 };

export function encodeMeta(m: MetaImage): Buffer {
  const w = new ByteWriter();
  w.bytes(META_MAGIC).u64(m.generation).u32(m.blockSize).u32(m.entries.length).u32(m.alloc.length).u32(0).u64(m.nextInode);
  for (const r of m.alloc) w.u64(r.start).u64(r.count);
  for (const e of m.entries) {
    const name = Buffer.from(e.name, "utf8");
    w.u64(e.inode).u64(e.parent).u8(KIND_CODE[e.kind]).u8(0).u16(name.length).u32(e.extents.length).u64(e.size).u64(e.mtimeMs);
    w.bytes(name);
    for (const x of e.extents) w.u64(x.fileOffset).u64(x.lunOffset).u64(x.length);
  }
  return w.finish();
}

/** Decodes the metadata blob (structure only; the file system's rules are fsck's job). */
export function decodeMeta(buf: Buffer): MetaImage {
  const r = new ByteReader(buf, "metadata");
  if (!r.bytes(8).equals(META_MAGIC)) throw new CorruptError("metadata: bad magic");
  const generation = r.u64();
  const blockSize = r.u32();
  const entryCount = r.u32();
  const allocCount = r.u32();
  r.skip(4);
  const nextInode = r.u64();
  const alloc: BlockRun[] = [];
  for (let i = 0; i < allocCount; i++) alloc.push({ start: r.u64(), count: r.u64() });
  const entries: InodeRecord[] = [];
  for (let i = 0; i < entryCount; i++) {
    const inode = r.u64();
    const parent = r.u64();
    const code = r.u8();
    const kind: InodeKind | undefined = code === 1 ? "dir" : code === 2 ? "file" : undefined;
    if (kind === undefined) throw new CorruptError(`metadata: entry ${i} (inode ${inode}) has unknown kind ${code}`);
    r.skip(1);
    const nameLen = r.u16();
    const extentCount = r.u32();
    const size = r.u64();
    const mtimeMs = r.u64();
    const name = r.bytes(nameLen).toString("utf8");
    const extents: FileExtent[] = [];
    for (let k = 0; k < extentCount; k++) extents.push({ fileOffset: r.u64(), lunOffset: r.u64(), length: r.u64() });
    entries.push({ inode, parent, kind, name, size, mtimeMs, extents });
  }
  if (r.remaining !== 0) throw new CorruptError(`metadata: ${r.remaining} trailing bytes`);
  return { generation, blockSize, nextInode, alloc, entries };
}

/** Sorted, coalesced runs from a set of block numbers. */
export function runsOf(blocks: Iterable<number>): BlockRun[] {
  const sorted = [...blocks].sort((a, b) => a - b);
  const out: BlockRun[] = [];
  for (const b of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && last.start + last.count === b) out[out.length - 1] = { start: last.start, count: last.count + 1 };
    else if (last === undefined || b >= last.start + last.count) out.push({ start: b, count: 1 });
  }
  return out;
}
