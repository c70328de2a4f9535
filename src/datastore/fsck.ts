/**
 * Finding the committed state on a device, and checking it.
 *
 * `loadCommitted` reads both superblock slots and takes the valid one with the
 * highest generation whose metadata blob also checks out (falling back to the
 * other slot, with a note, if the newest blob is damaged).
 * `checkImage` is the invariant checker: every rule of docs/datastore-format.md,
 * as a list of human-readable violations. It is pure, so tests run it after
 * every operation ("strict mode") and `fsck` runs it on any device.
 */
import { CorruptError, errorMessage } from "../errors.js";
import type { BlockDevice } from "../block-device.js";
import { crc32c } from "./crc32c.js";
import {
  MAX_NAME_BYTES,
  ROOT_INODE,
  SUPERBLOCK_OFFSETS,
  SUPERBLOCK_SIZE,
  decodeMeta,
  decodeSuperblock,
  reservedBlocks,
  superblockSlot,
  type MetaImage,
  type Superblock,
} from "./format.js";

export interface Committed {
  sb: Superblock;
  meta: MetaImage;
  slot: 0 | 1;
  /** Why a slot was not used (torn, stale, unformatted …). */
  notes: string[];
}

export async function readMetaBlob(dev: BlockDevice, sb: Superblock): Promise<Buffer> {
  const parts: Buffer[] = [];
  let have = 0;
  for (const r of sb.metaRuns) {
    if (have >= sb.metaLength) break;
    const off = r.start * sb.blockSize;
    const len = Math.min(r.count * sb.blockSize, sb.metaLength - have);
    if (off + len > dev.size) throw new CorruptError(`metadata run at block ${r.start} lies beyond the device`);
    parts.push(await dev.read(off, len));
    have += len;
  }
  if (have !== sb.metaLength) throw new CorruptError(`metadata runs hold ${have} bytes, superblock says ${sb.metaLength}`);
  const blob = Buffer.concat(parts);
  if (crc32c(blob) !== sb.metaChecksum) throw new CorruptError(`metadata of generation ${sb.generation}: checksum mismatch`);
  return blob;
}

export async function loadCommitted(dev: BlockDevice): Promise<Committed> {
  const notes: string[] = [];
  const candidates: { sb: Superblock; slot: 0 | 1 }[] = [];
  for (const slot of [0, 1] as const) {
    const where = `superblock slot ${slot}`;
    const off = SUPERBLOCK_OFFSETS[slot];
    if (off + SUPERBLOCK_SIZE > dev.size) {
      notes.push(`${where}: device too small`);
      continue;
    }
    try {
      const sb = decodeSuperblock(await dev.read(off, SUPERBLOCK_SIZE), where);
      if (superblockSlot(sb.generation) !== slot) throw new CorruptError(`${where}: generation ${sb.generation} belongs in the other slot`);
      candidates.push({ sb, slot });
    } catch (e: unknown) {
      if (!(e instanceof CorruptError)) throw e;
      notes.push(e.message);
    }
  }
  candidates.sort((a, b) => b.sb.generation - a.sb.generation);
  for (const c of candidates) {
    try {
      const meta = decodeMeta(await readMetaBlob(dev, c.sb));
      return { sb: c.sb, meta, slot: c.slot, notes };
    } catch (e: unknown) {
      if (!(e instanceof CorruptError)) throw e;
      notes.push(`generation ${c.sb.generation}: ${e.message}`);
    }
  }
  throw new CorruptError(`no valid datastore superblock: ${notes.join("; ")}`);
}

export interface FsckReport {
  ok: boolean;
  errors: string[];
  notes: string[];
  generation: number;
  blockSize: number;
  blockCount: number;
  files: number;
  directories: number;
  usedBlocks: number;
  freeBlocks: number;
}

export function validName(name: string): boolean {
  return name.length > 0 && name !== "." && name !== ".." && !name.includes("/") && !name.includes("\0") && Buffer.byteLength(name, "utf8") <= MAX_NAME_BYTES;
}

/** Every invariant of one committed state. */
export function checkImage(sb: Superblock, meta: MetaImage, deviceSize: number): FsckReport {
  const errors: string[] = [];
  const B = sb.blockSize;
  const N = sb.blockCount;
  const reserved = reservedBlocks(B);
  if (meta.generation !== sb.generation) errors.push(`metadata generation ${meta.generation} != superblock generation ${sb.generation}`);
  if (meta.blockSize !== B) errors.push(`metadata block size ${meta.blockSize} != superblock block size ${B}`);
  if (N * B > deviceSize) errors.push(`file system (${N} blocks of ${B}) is larger than the device (${deviceSize} bytes)`);
  if (N <= reserved) errors.push(`file system has ${N} blocks, not more than the ${reserved} reserved`);

  // Block ownership: 0 free, 1 reserved, 2 metadata, 3 file data.
  const owner = new Uint8Array(N);
  const ownerName = new Map<number, string>();
  for (let b = 0; b < Math.min(reserved, N); b++) owner[b] = 1;
  const claim = (b: number, what: string): void => {
    if (owner[b] !== 0) {
      errors.push(`${what}: block ${b} is also used by ${ownerName.get(b) ?? "reserved area"}`);
      return;
    }
    owner[b] = what === "metadata" ? 2 : 3;
    ownerName.set(b, what);
  };
  const claimRun = (start: number, count: number, what: string): void => {
    if (start < reserved || start + count > N) {
      errors.push(`${what}: blocks [${start}, +${count}) lie outside the data area [${reserved}, ${N})`);
      return;
    }
    for (let b = start; b < start + count; b++) claim(b, what);
  };
  let metaCapacity = 0;
  for (const r of sb.metaRuns) {
    claimRun(r.start, r.count, "metadata");
    metaCapacity += r.count * B;
  }
  if (metaCapacity < sb.metaLength) errors.push(`metadata runs hold ${metaCapacity} bytes < metadata length ${sb.metaLength}`);

  // The tree.
  const byInode = new Map<number, (typeof meta.entries)[number]>();
  for (const e of meta.entries) {
    if (byInode.has(e.inode)) errors.push(`inode ${e.inode} appears twice`);
    byInode.set(e.inode, e);
    if (e.inode >= meta.nextInode) errors.push(`inode ${e.inode} >= next inode ${meta.nextInode}`);
  }
  const root = byInode.get(ROOT_INODE);
  if (root === undefined || root.kind !== "dir" || root.parent !== ROOT_INODE || root.name !== "") errors.push("root directory (inode 1) is missing or malformed");
  const names = new Set<string>();
  let files = 0;
  let directories = 0;
  for (const e of meta.entries) {
    if (e.kind === "dir") directories++;
    else files++;
    if (e.inode === ROOT_INODE) continue;
    const label = `inode ${e.inode} ("${e.name}")`;
    if (!validName(e.name)) errors.push(`${label}: invalid name`);
    const parent = byInode.get(e.parent);
    if (parent === undefined || parent.kind !== "dir") errors.push(`${label}: parent ${e.parent} is not a directory`);
    const key = `${e.parent}/${e.name}`;
    if (names.has(key)) errors.push(`${label}: duplicate name in directory ${e.parent}`);
    names.add(key);
    // Reachability from the root (no cycles).
    let at = e.parent;
    let steps = 0;
    while (at !== ROOT_INODE && steps <= meta.entries.length) {
      at = byInode.get(at)?.parent ?? ROOT_INODE;
      steps++;
    }
    if (steps > meta.entries.length) errors.push(`${label}: not reachable from the root (cycle)`);
    if (e.kind === "dir" && e.extents.length > 0) errors.push(`${label}: a directory with extents`);
    if (!Number.isSafeInteger(e.size) || e.size < 0) errors.push(`${label}: invalid size ${e.size}`);
    let prevEnd = 0;
    const limit = Math.ceil(e.size / B) * B;
    for (const x of e.extents) {
      if (x.length <= 0 || x.fileOffset % B !== 0 || x.lunOffset % B !== 0 || x.length % B !== 0) {
        errors.push(`${label}: extent (${x.fileOffset}, ${x.lunOffset}, ${x.length}) is not block-aligned`);
        continue;
      }
      if (x.fileOffset < prevEnd) errors.push(`${label}: extents overlap or are unsorted at file offset ${x.fileOffset}`);
      if (x.fileOffset + x.length > limit) errors.push(`${label}: extent at file offset ${x.fileOffset} lies beyond the file size ${e.size}`);
      prevEnd = x.fileOffset + x.length;
      claimRun(x.lunOffset / B, x.length / B, `file inode ${e.inode}`);
    }
  }

  // The allocation map must be exactly reserved + metadata + file blocks.
  const mapped = new Uint8Array(N);
  let prev = -1;
  for (const r of meta.alloc) {
    if (r.count <= 0 || r.start <= prev || r.start + r.count > N) {
      errors.push(`allocation map: run (${r.start}, ${r.count}) is empty, unsorted, overlapping or out of range`);
      continue;
    }
    prev = r.start + r.count;
    mapped.fill(1, r.start, r.start + r.count);
  }
  let used = 0;
  let mismatches = 0;
  for (let b = 0; b < N; b++) {
    const isUsed = owner[b] !== 0;
    if (isUsed) used++;
    if (isUsed !== (mapped[b] === 1)) {
      if (mismatches < 10) errors.push(`allocation map: block ${b} is ${mapped[b] === 1 ? "marked allocated but unreferenced" : `referenced by ${ownerName.get(b) ?? "the reserved area"} but marked free`}`);
      mismatches++;
    }
  }
  if (mismatches > 10) errors.push(`allocation map: ${mismatches - 10} more mismatched blocks`);
  return { ok: errors.length === 0, errors, notes: [], generation: sb.generation, blockSize: B, blockCount: N, files, directories, usedBlocks: used, freeBlocks: N - used };
}

/** fsck of a device: find the committed state and check it. Never throws for a damaged image. */
export async function fsck(dev: BlockDevice): Promise<FsckReport> {
  try {
    const c = await loadCommitted(dev);
    const report = checkImage(c.sb, c.meta, dev.size);
    report.notes = c.notes;
    return report;
  } catch (e: unknown) {
    if (!(e instanceof CorruptError)) throw e;
    return { ok: false, errors: [errorMessage(e)], notes: [], generation: 0, blockSize: 0, blockCount: 0, files: 0, directories: 0, usedBlocks: 0, freeBlocks: 0 };
  }
}
