/**
 * The datastore file system: thin files with per-file extent maps on one LUN,
 * with crash-consistent, copy-on-write metadata. Format: docs/datastore-format.md.
 *
 * State machine of a block (the `state` array, one byte per block):
 *
 *   FREE ──allocate──▶ USED ──free──▶ PENDING ──next commit durable──▶ FREE
 *
 * A block freed since the last commit stays PENDING: the durable metadata (and
 * so a crash, or an array snapshot taken now) may still reference it, so it
 * must not be handed to anyone else until a commit that no longer references
 * it is durable. The metadata blocks of the superseded generation go through
 * PENDING the same way. Released blocks are trimmed on the device (`discard`).
 *
 * Data writes to a block the file already owns go in place; a write into a
 * hole goes to a freshly allocated block (written whole, zero-padded) that the
 * durable metadata does not reference, and becomes visible at the next commit.
 * In the default `commit: "auto"` mode every operation that changed metadata
 * commits before it returns, so an acknowledged write is durable.
 *
 * All operations run one at a time (an internal queue), reads included.
 */
import { randomUUID } from "node:crypto";
import { AlreadyExistsError, CorruptError, FailedPreconditionError, InvalidArgumentError, IoError, NoSpaceError, NotFoundError, ReadOnlyError, quote } from "../errors.js";
import type { BlockDevice } from "../block-device.js";
import { crc32c } from "./crc32c.js";
import { checkImage, loadCommitted, validName, type FsckReport } from "./fsck.js";
import {
  DEFAULT_BLOCK_SIZE,
  FORMAT_VERSION,
  MAX_META_RUNS,
  ROOT_INODE,
  SUPERBLOCK_OFFSETS,
  SUPERBLOCK_SIZE,
  checkBlockSize,
  encodeMeta,
  encodeSuperblock,
  reservedBlocks,
  runsOf,
  superblockSlot,
  type BlockRun,
  type FileExtent,
  type InodeKind,
  type MetaImage,
  type Superblock,
} from "./format.js";

export type { FileExtent, InodeKind } from "./format.js";

export interface FormatOptions {
  /** Default 64 KiB, the CBT granularity. */
  blockSize?: number;
  label?: string;
  /** 32 hex digits; default random. */
  uuid?: string;
}

export interface OpenOptions {
  /** Refuse all changes (implied by a read-only device). */
  readOnly?: boolean;
  /** "auto" (default): each changing operation commits before returning. "manual": call commit(). */
  commit?: "auto" | "manual";
  /** Trim released blocks on the device (default true when the device can trim). */
  discard?: boolean;
  /** Run the full invariant checker after every commit (tests). */
  strict?: boolean;
  /** Clock for mtimes (tests). */
  now?: () => number;
}

export interface DirEntry {
  /** Absolute, "/"-separated, no trailing slash ("/" for the root). */
  path: string;
  name: string;
  kind: InodeKind;
  inode: number;
  size: number;
  mtimeMs: number;
}

const FREE = 0;
const USED = 1;
const PENDING = 2;

interface Inode {
  inode: number;
  parent: number;
  kind: InodeKind;
  name: string;
  size: number;
  mtimeMs: number;
  /** file block -> LUN block */
  blocks: Map<number, number>;
  /** directories: name -> inode */
  children: Map<string, number>;
  extentCache: FileExtent[] | undefined;
}

/** Splits an absolute or relative path into validated components ("/" and "" are the root). */
export function splitPath(path: string): string[] {
  const parts = path.split("/").filter((p) => p.length > 0);
  for (const p of parts) if (!validName(p)) throw new InvalidArgumentError(`invalid path ${quote(path)}: bad component ${quote(p)}`);
  return parts;
}

export function joinPath(parts: readonly string[]): string {
  return "/" + parts.join("/");
}

export class Datastore {
  private readonly inodes = new Map<number, Inode>();
  private state: Uint8Array;
  private pending: number[] = [];
  private metaRuns: BlockRun[] = [];
  private nextInode = ROOT_INODE + 1;
  private gen: number;
  private dirty = false;
  private cursor: number;
  private failed: Error | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly auto: boolean;
  private readonly discard: boolean;
  private readonly strict: boolean;
  private readonly now: () => number;
  readonly readOnly: boolean;

  /** A commit failed: this instance refuses every operation, and only a reopen from the LUN recovers. */
  get unusable(): boolean {
    return this.failed !== undefined;
  }

  private constructor(
    readonly device: BlockDevice,
    private readonly sb: Omit<Superblock, "generation" | "metaLength" | "metaChecksum" | "metaRuns">,
    generation: number,
    opts: OpenOptions,
  ) {
    this.gen = generation;
    this.state = new Uint8Array(sb.blockCount);
    this.state.fill(USED, 0, reservedBlocks(sb.blockSize));
    this.cursor = reservedBlocks(sb.blockSize);
    this.auto = (opts.commit ?? "auto") === "auto";
    this.discard = opts.discard ?? true;
    this.strict = opts.strict ?? false;
    this.now = opts.now ?? Date.now;
    this.readOnly = device.readOnly || opts.readOnly === true;
  }

  /** Writes an empty file system (generation 1) over the whole device. */
  static async format(dev: BlockDevice, fmt: FormatOptions = {}, opts: OpenOptions = {}): Promise<Datastore> {
    if (dev.readOnly) throw new ReadOnlyError("format: the device is read-only");
    const blockSize = fmt.blockSize ?? DEFAULT_BLOCK_SIZE;
    checkBlockSize(blockSize);
    const blockCount = Math.floor(dev.size / blockSize);
    if (blockCount < reservedBlocks(blockSize) + 2) throw new InvalidArgumentError(`device of ${dev.size} bytes is too small for a datastore with ${blockSize}-byte blocks`);
    const uuid = fmt.uuid ?? randomUUID().replaceAll("-", "");
    const ds = new Datastore(dev, { version: FORMAT_VERSION, blockSize, blockCount, uuid, label: fmt.label ?? "" }, 0, { ...opts, readOnly: false });
    // Invalidate any previous file system first: both slots become unparseable.
    for (const off of SUPERBLOCK_OFFSETS) await dev.write(off, Buffer.alloc(SUPERBLOCK_SIZE));
    ds.inodes.set(ROOT_INODE, newInode(ROOT_INODE, ROOT_INODE, "dir", "", ds.now()));
    await ds.run(() => ds.commitLocked());
    return ds;
  }

  /** Mounts the newest committed generation; refuses (CorruptError) a state that fails the checker. */
  static async open(dev: BlockDevice, opts: OpenOptions = {}): Promise<Datastore> {
    const c = await loadCommitted(dev);
    const report = checkImage(c.sb, c.meta, dev.size);
    if (!report.ok) throw new CorruptError(`datastore generation ${c.sb.generation} fails fsck: ${report.errors.slice(0, 3).join("; ")}`);
    const { generation: _g, metaLength: _l, metaChecksum: _c, metaRuns, ...fixed } = c.sb;
    const ds = new Datastore(dev, fixed, c.sb.generation, opts);
    ds.load(c.meta, metaRuns);
    return ds;
  }

  private load(meta: MetaImage, metaRuns: BlockRun[]): void {
    const B = this.sb.blockSize;
    this.nextInode = meta.nextInode;
    this.metaRuns = metaRuns;
    for (const r of metaRuns) this.state.fill(USED, r.start, r.start + r.count);
    for (const e of meta.entries) {
      const ino = newInode(e.inode, e.parent, e.kind, e.name, e.mtimeMs);
      ino.size = e.size;
      for (const x of e.extents) {
        for (let i = 0; i < x.length / B; i++) {
          ino.blocks.set(x.fileOffset / B + i, x.lunOffset / B + i);
          this.state[x.lunOffset / B + i] = USED;
        }
      }
      this.inodes.set(e.inode, ino);
    }
    for (const ino of this.inodes.values()) if (ino.inode !== ROOT_INODE) this.inodeOf(ino.parent).children.set(ino.name, ino.inode);
  }

  get generation(): number {
    return this.gen;
  }
  get blockSize(): number {
    return this.sb.blockSize;
  }
  get blockCount(): number {
    return this.sb.blockCount;
  }
  get uuid(): string {
    return this.sb.uuid;
  }
  get label(): string {
    return this.sb.label;
  }
  /** True when changes are waiting for commit() (manual mode). */
  get uncommitted(): boolean {
    return this.dirty;
  }

  /** Used and free blocks (PENDING blocks count as used). */
  usage(): { blockSize: number; blocks: number; used: number; free: number } {
    let free = 0;
    for (const s of this.state) if (s === FREE) free++;
    return { blockSize: this.blockSize, blocks: this.blockCount, used: this.blockCount - free, free };
  }

  // ---- queries -------------------------------------------------------------------------

  async stat(path: string): Promise<DirEntry> {
    return this.run(async () => this.entry(this.resolve(path)));
  }

  async exists(path: string): Promise<boolean> {
    return this.run(async () => this.lookup(splitPath(path)) !== undefined);
  }

  /** The entries of a directory, sorted by name. */
  async list(path = "/"): Promise<DirEntry[]> {
    return this.run(async () => {
      const dir = this.resolve(path);
      if (dir.kind !== "dir") throw new FailedPreconditionError(`${path}: not a directory`);
      return [...dir.children.values()].map((i) => this.entry(this.inodeOf(i))).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    });
  }

  /** Every entry below `path` (depth first, sorted by path), not including `path` itself. */
  async walk(path = "/"): Promise<DirEntry[]> {
    return this.run(async () => {
      const out: DirEntry[] = [];
      const visit = (ino: Inode): void => {
        for (const name of [...ino.children.keys()].sort()) {
          const child = this.inodeOf(ino.children.get(name) ?? 0);
          out.push(this.entry(child));
          if (child.kind === "dir") visit(child);
        }
      };
      visit(this.resolve(path));
      return out;
    });
  }

  /**
   * Where a file's bytes live on the LUN: sorted, coalesced (fileOffset, lunOffset, length)
   * runs. Offsets are block-aligned; the last run is clipped at the file size. Holes
   * (unwritten or trimmed ranges, which read as zeros) are the gaps between runs.
   */
  async extentMap(path: string): Promise<FileExtent[]> {
    return this.run(async () => {
      const ino = this.resolveFile(path);
      return this.extentsOf(ino)
        .filter((x) => x.fileOffset < ino.size)
        .map((x) => ({ ...x, length: Math.min(x.length, ino.size - x.fileOffset) }));
    });
  }

  /** Reads up to `length` bytes at `offset`; short at end of file; holes read as zeros. */
  async read(path: string, offset: number, length: number): Promise<Buffer> {
    checkOffLen(offset, length);
    return this.run(async () => this.readLocked(this.resolveFile(path), offset, length));
  }

  async readFile(path: string): Promise<Buffer> {
    return this.run(async () => {
      const ino = this.resolveFile(path);
      return this.readLocked(ino, 0, ino.size);
    });
  }

  // ---- changes -------------------------------------------------------------------------

  async mkdir(path: string, opts: { parents?: boolean } = {}): Promise<void> {
    await this.mutate(async () => {
      const parts = splitPath(path);
      if (parts.length === 0) {
        if (opts.parents === true) return;
        throw new AlreadyExistsError("/: already exists");
      }
      let dir = this.inodeOf(ROOT_INODE);
      for (let i = 0; i < parts.length; i++) {
        const name = parts[i] as string;
        const existing = dir.children.get(name);
        const last = i === parts.length - 1;
        if (existing !== undefined) {
          const ino = this.inodeOf(existing);
          if (ino.kind !== "dir") throw new FailedPreconditionError(`${joinPath(parts.slice(0, i + 1))}: not a directory`);
          if (last && opts.parents !== true) throw new AlreadyExistsError(`${joinPath(parts)}: already exists`);
          dir = ino;
          continue;
        }
        if (!last && opts.parents !== true) throw new NotFoundError(`${joinPath(parts.slice(0, i + 1))}: no such directory`);
        dir = this.addInode(dir, name, "dir");
      }
    });
  }

  /** Creates an empty (thin) file of `size` bytes. Fails if the path exists, unless `exclusive: false` and it is a file. */
  async create(path: string, opts: { size?: number; exclusive?: boolean } = {}): Promise<void> {
    const size = opts.size ?? 0;
    checkOffLen(size, 0);
    await this.mutate(async () => {
      const parts = splitPath(path);
      const existing = this.lookup(parts);
      if (existing !== undefined) {
        if (opts.exclusive === false && existing.kind === "file") return;
        throw new AlreadyExistsError(`${path}: already exists`);
      }
      const ino = this.addInode(this.parentOf(parts, path), parts[parts.length - 1] as string, "file");
      ino.size = size;
    });
  }

  async write(path: string, offset: number, data: Buffer): Promise<void> {
    checkOffLen(offset, data.length);
    await this.mutate(async () => this.writeLocked(this.resolveFile(path), offset, data));
  }

  /** Creates or replaces a whole file. */
  async writeFile(path: string, data: Buffer): Promise<void> {
    await this.mutate(async () => {
      const parts = splitPath(path);
      let ino = this.lookup(parts);
      if (ino === undefined) ino = this.addInode(this.parentOf(parts, path), parts[parts.length - 1] as string, "file");
      if (ino.kind !== "file") throw new FailedPreconditionError(`${path}: is a directory`);
      this.truncateLocked(ino, 0);
      await this.writeLocked(ino, 0, data);
    });
  }

  /** Grows (the new range is a hole) or shrinks (whole blocks past the end are freed) a file. */
  async truncate(path: string, size: number): Promise<void> {
    checkOffLen(size, 0);
    await this.mutate(async () => {
      const ino = this.resolveFile(path);
      if (size > ino.size) await this.extendLocked(ino, size);
      else this.truncateLocked(ino, size);
    });
  }

  /** Punches a hole: whole blocks in the range are freed, partial ones zeroed in place. Size is unchanged. */
  async trim(path: string, offset: number, length: number): Promise<void> {
    checkOffLen(offset, length);
    await this.mutate(async () => {
      const ino = this.resolveFile(path);
      const B = this.blockSize;
      const end = Math.min(offset + length, ino.size);
      const zeroes: Promise<void>[] = [];
      for (let pos = offset; pos < end; ) {
        const fb = Math.floor(pos / B);
        const n = Math.min((fb + 1) * B, end) - pos;
        const lb = ino.blocks.get(fb);
        if (lb !== undefined) {
          if (n === B) {
            ino.blocks.delete(fb);
            this.release(lb);
            this.touch(ino);
          } else {
            zeroes.push(this.device.write(lb * B + (pos - fb * B), Buffer.alloc(n)));
          }
        }
        pos += n;
      }
      await Promise.all(zeroes);
    });
  }

  /** Deletes a file, or a directory (empty, unless `recursive`). */
  async delete(path: string, opts: { recursive?: boolean } = {}): Promise<void> {
    await this.mutate(async () => {
      const ino = this.resolve(path);
      if (ino.inode === ROOT_INODE) throw new InvalidArgumentError("cannot delete the root directory");
      if (ino.kind === "dir" && ino.children.size > 0 && opts.recursive !== true) throw new FailedPreconditionError(`${path}: directory not empty`);
      this.deleteLocked(ino);
    });
  }

  /** Renames a file or directory. An existing destination file is replaced only with `replace`. */
  async rename(from: string, to: string, opts: { replace?: boolean } = {}): Promise<void> {
    await this.mutate(async () => {
      const src = this.resolve(from);
      if (src.inode === ROOT_INODE) throw new InvalidArgumentError("cannot rename the root directory");
      const parts = splitPath(to);
      const dstDir = this.parentOf(parts, to);
      const name = parts[parts.length - 1] as string;
      for (let at = dstDir; ; at = this.inodeOf(at.parent)) {
        if (at.inode === src.inode) throw new InvalidArgumentError(`cannot move ${from} into itself (${to})`);
        if (at.inode === ROOT_INODE) break;
      }
      const existing = dstDir.children.get(name);
      if (existing === src.inode) return;
      if (existing !== undefined) {
        const victim = this.inodeOf(existing);
        if (opts.replace !== true || victim.kind !== "file" || src.kind !== "file") throw new AlreadyExistsError(`${to}: already exists`);
        this.deleteLocked(victim);
      }
      this.inodeOf(src.parent).children.delete(src.name);
      src.parent = dstDir.inode;
      src.name = name;
      dstDir.children.set(name, src.inode);
      this.touch(src);
    });
  }

  /** Makes every change so far durable: writes the metadata copy-on-write, then the next superblock. */
  async commit(): Promise<number> {
    return this.run(async () => {
      if (this.dirty) await this.commitLocked();
      return this.gen;
    });
  }

  /** Commits pending metadata, or just flushes the device when there is none. */
  async flush(): Promise<void> {
    await this.run(async () => {
      if (this.readOnly) return;
      if (this.dirty) await this.commitLocked();
      else await this.device.flush();
    });
  }

  /** The invariant checker over the in-memory state, exactly as fsck would see it once committed. */
  check(): FsckReport {
    const meta = this.image(this.gen);
    const sb: Superblock = { ...this.sb, generation: this.gen, metaLength: 0, metaChecksum: 0, metaRuns: this.metaRuns };
    return checkImage(sb, meta, this.device.size);
  }

  /** Commits (unless read-only); the device stays open (the caller owns it). */
  async close(): Promise<void> {
    if (!this.readOnly && this.failed === undefined) await this.commit();
  }

  // ---- internals -----------------------------------------------------------------------

  private run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(() => {
      if (this.failed !== undefined) throw new IoError(`datastore is unusable after a failed commit; reopen it`, { cause: this.failed });
      return fn();
    });
    this.queue = p.catch(() => undefined);
    return p;
  }

  private mutate(fn: () => Promise<void>): Promise<void> {
    return this.run(async () => {
      if (this.readOnly) throw new ReadOnlyError("the datastore is open read-only");
      try {
        await fn();
      } catch (e: unknown) {
        // A partly done operation (e.g. a write that ran out of space) still commits what it did,
        // so memory and disk agree; the caller sees the original error.
        if (this.auto && this.dirty && this.failed === undefined) await this.commitLocked().catch(() => undefined);
        throw e;
      }
      if (this.auto && this.dirty) await this.commitLocked();
    });
  }

  private inodeOf(n: number): Inode {
    const ino = this.inodes.get(n);
    if (ino === undefined) throw new CorruptError(`inode ${n} is missing`);
    return ino;
  }

  private lookup(parts: readonly string[]): Inode | undefined {
    let at = this.inodeOf(ROOT_INODE);
    for (const p of parts) {
      if (at.kind !== "dir") return undefined;
      const next = at.children.get(p);
      if (next === undefined) return undefined;
      at = this.inodeOf(next);
    }
    return at;
  }

  private resolve(path: string): Inode {
    const ino = this.lookup(splitPath(path));
    if (ino === undefined) throw new NotFoundError(`${path}: no such file or directory`);
    return ino;
  }

  private resolveFile(path: string): Inode {
    const ino = this.resolve(path);
    if (ino.kind !== "file") throw new FailedPreconditionError(`${path}: is a directory`);
    return ino;
  }

  private parentOf(parts: readonly string[], path: string): Inode {
    if (parts.length === 0) throw new InvalidArgumentError(`${path}: the root has no parent`);
    const dir = this.lookup(parts.slice(0, -1));
    if (dir === undefined) throw new NotFoundError(`${path}: parent directory does not exist`);
    if (dir.kind !== "dir") throw new FailedPreconditionError(`${path}: parent is not a directory`);
    return dir;
  }

  private pathOf(ino: Inode): string {
    const parts: string[] = [];
    for (let at = ino; at.inode !== ROOT_INODE; at = this.inodeOf(at.parent)) parts.unshift(at.name);
    return joinPath(parts);
  }

  private entry(ino: Inode): DirEntry {
    return { path: this.pathOf(ino), name: ino.name, kind: ino.kind, inode: ino.inode, size: ino.size, mtimeMs: ino.mtimeMs };
  }

  private addInode(dir: Inode, name: string, kind: InodeKind): Inode {
    if (dir.children.has(name)) throw new AlreadyExistsError(`${name}: already exists`);
    const ino = newInode(this.nextInode++, dir.inode, kind, name, this.now());
    this.inodes.set(ino.inode, ino);
    dir.children.set(name, ino.inode);
    this.dirty = true;
    return ino;
  }

  private deleteLocked(ino: Inode): void {
    for (const child of [...ino.children.values()]) this.deleteLocked(this.inodeOf(child));
    for (const lb of ino.blocks.values()) this.release(lb);
    this.inodeOf(ino.parent).children.delete(ino.name);
    this.inodes.delete(ino.inode);
    this.dirty = true;
  }

  private touch(ino: Inode): void {
    ino.mtimeMs = this.now();
    ino.extentCache = undefined;
    this.dirty = true;
  }

  private allocate(hint: number | undefined): number {
    const N = this.blockCount;
    if (hint !== undefined && hint < N && this.state[hint] === FREE) {
      this.state[hint] = USED;
      return hint;
    }
    const first = reservedBlocks(this.blockSize);
    for (let i = 0; i < N; i++) {
      let b = this.cursor + i;
      if (b >= N) b = first + ((b - N) % (N - first));
      if (this.state[b] === FREE) {
        this.state[b] = USED;
        this.cursor = b + 1 >= N ? first : b + 1;
        return b;
      }
    }
    throw new NoSpaceError(`datastore is full (${N} blocks of ${this.blockSize} bytes; ${this.pending.length} await the next commit)`);
  }

  /** Start of the first run of `n` FREE blocks (so metadata stays in few runs), if there is one. */
  private freeRun(n: number): number | undefined {
    let start = -1;
    for (let b = reservedBlocks(this.blockSize); b < this.blockCount; b++) {
      if (this.state[b] !== FREE) start = -1;
      else {
        if (start < 0) start = b;
        if (b - start + 1 >= n) return start;
      }
    }
    return undefined;
  }

  /** A block leaves its owner; it becomes free once the next commit is durable. */
  private release(lb: number): void {
    this.state[lb] = PENDING;
    this.pending.push(lb);
  }

  private extentsOf(ino: Inode): FileExtent[] {
    if (ino.extentCache !== undefined) return ino.extentCache;
    const B = this.blockSize;
    const fbs = [...ino.blocks.keys()].sort((a, b) => a - b);
    const out: FileExtent[] = [];
    let cur: { fb: number; lb: number; n: number } | undefined;
    for (const fb of fbs) {
      const lb = ino.blocks.get(fb) as number;
      if (cur !== undefined && cur.fb + cur.n === fb && cur.lb + cur.n === lb) cur.n++;
      else {
        if (cur !== undefined) out.push({ fileOffset: cur.fb * B, lunOffset: cur.lb * B, length: cur.n * B });
        cur = { fb, lb, n: 1 };
      }
    }
    if (cur !== undefined) out.push({ fileOffset: cur.fb * B, lunOffset: cur.lb * B, length: cur.n * B });
    ino.extentCache = out;
    return out;
  }

  private async readLocked(ino: Inode, offset: number, length: number): Promise<Buffer> {
    const B = this.blockSize;
    const end = Math.min(offset + length, ino.size);
    if (end <= offset) return Buffer.alloc(0);
    const out = Buffer.alloc(end - offset);
    const reads: { lun: number; at: number; len: number }[] = [];
    for (let pos = offset; pos < end; ) {
      const fb = Math.floor(pos / B);
      const n = Math.min((fb + 1) * B, end) - pos;
      const lb = ino.blocks.get(fb);
      if (lb !== undefined) {
        const lun = lb * B + (pos - fb * B);
        const last = reads[reads.length - 1];
        if (last !== undefined && last.lun + last.len === lun && last.at + last.len === pos - offset) last.len += n;
        else reads.push({ lun, at: pos - offset, len: n });
      }
      pos += n;
    }
    await Promise.all(
      reads.map(async (r) => {
        const data = await this.device.read(r.lun, r.len);
        data.copy(out, r.at);
      }),
    );
    return out;
  }

  /** Grows a file: the stale tail of its last partial block (left by an earlier shrink) is zeroed first. */
  private async extendLocked(ino: Inode, size: number): Promise<void> {
    const B = this.blockSize;
    if (ino.size % B !== 0) {
      const fb = Math.floor(ino.size / B);
      const lb = ino.blocks.get(fb);
      const stop = Math.min((fb + 1) * B, size);
      if (lb !== undefined && stop > ino.size) await this.device.write(lb * B + (ino.size % B), Buffer.alloc(stop - ino.size));
    }
    ino.size = size;
    this.touch(ino);
  }

  private truncateLocked(ino: Inode, size: number): void {
    const keep = Math.ceil(size / this.blockSize);
    for (const [fb, lb] of [...ino.blocks]) {
      if (fb >= keep) {
        ino.blocks.delete(fb);
        this.release(lb);
      }
    }
    if (ino.size !== size) {
      ino.size = size;
    }
    this.touch(ino);
  }

  private async writeLocked(ino: Inode, offset: number, data: Buffer): Promise<void> {
    const B = this.blockSize;
    const end = offset + data.length;
    if (end > ino.size) await this.extendLocked(ino, end);
    const segs: { lun: number; parts: Buffer[]; len: number }[] = [];
    for (let pos = offset; pos < end; ) {
      const fb = Math.floor(pos / B);
      const inner = pos - fb * B;
      const n = Math.min(B - inner, end - pos);
      const src = data.subarray(pos - offset, pos - offset + n);
      let lb = ino.blocks.get(fb);
      let lun: number;
      let buf: Buffer;
      if (lb === undefined) {
        const prev = ino.blocks.get(fb - 1);
        lb = this.allocate(prev === undefined ? undefined : prev + 1);
        ino.blocks.set(fb, lb);
        this.touch(ino);
        lun = lb * B;
        if (n === B) buf = src;
        else {
          buf = Buffer.alloc(B);
          src.copy(buf, inner);
        }
      } else {
        lun = lb * B + inner;
        buf = src;
      }
      const last = segs[segs.length - 1];
      if (last !== undefined && last.lun + last.len === lun) {
        last.parts.push(buf);
        last.len += buf.length;
      } else segs.push({ lun, parts: [buf], len: buf.length });
      pos += n;
    }
    await Promise.all(segs.map((s) => this.device.write(s.lun, s.parts.length === 1 ? (s.parts[0] as Buffer) : Buffer.concat(s.parts, s.len))));
  }

  /** The metadata image of the in-memory state, as it would be committed as `generation`. */
  private image(generation: number): MetaImage {
    const alloc: BlockRun[] = [];
    const st = this.state;
    for (let b = 0; b < st.length; ) {
      if (st[b] !== USED) {
        b++;
        continue;
      }
      const start = b;
      while (b < st.length && st[b] === USED) b++;
      alloc.push({ start, count: b - start });
    }
    const entries = [...this.inodes.values()]
      .sort((a, b) => a.inode - b.inode)
      .map((i) => ({ inode: i.inode, parent: i.parent, kind: i.kind, name: i.name, size: i.size, mtimeMs: i.mtimeMs, extents: this.extentsOf(i) }));
    return { generation, blockSize: this.blockSize, nextInode: this.nextInode, alloc, entries };
  }

  /**
   * The commit protocol:
   *   1. the superseded metadata blocks become PENDING;
   *   2. the new blob goes to freshly allocated blocks (never PENDING ones); flush;
   *   3. the superblock of generation g+1 goes to slot (g+1) mod 2 with FUA; flush;
   *   4. PENDING blocks become FREE (and are trimmed).
   * A crash before 3 completes leaves generation g intact; after it, g+1.
   */
  private async commitLocked(): Promise<void> {
    const B = this.blockSize;
    const generation = this.gen + 1;
    try {
      for (const r of this.metaRuns) for (let b = r.start; b < r.start + r.count; b++) this.release(b);
      const metaBlocks: number[] = [];
      let blob: Buffer;
      for (;;) {
        blob = encodeMeta(this.image(generation));
        const need = Math.max(1, Math.ceil(blob.length / B));
        if (need <= metaBlocks.length) break;
        const last = metaBlocks[metaBlocks.length - 1];
        let hint = last === undefined ? this.freeRun(need) : last + 1;
        while (metaBlocks.length < need) {
          const b = this.allocate(hint);
          metaBlocks.push(b);
          hint = b + 1;
        }
      }
      const runs = runsOf(metaBlocks);
      if (runs.length > MAX_META_RUNS) throw new NoSpaceError(`metadata needs ${runs.length} runs of free blocks; at most ${MAX_META_RUNS} fit (free space is too fragmented)`);
      let at = 0;
      const writes: Promise<void>[] = [];
      for (const r of runs) {
        if (at >= blob.length) break;
        const len = Math.min(r.count * B, blob.length - at);
        writes.push(this.device.write(r.start * B, blob.subarray(at, at + len)));
        at += len;
      }
      await Promise.all(writes);
      await this.device.flush();
      const sb: Superblock = { ...this.sb, generation, metaLength: blob.length, metaChecksum: crc32c(blob), metaRuns: runs };
      await this.device.write(SUPERBLOCK_OFFSETS[superblockSlot(generation)], encodeSuperblock(sb), { fua: true });
      await this.device.flush();
      this.gen = generation;
      this.metaRuns = runs;
      this.dirty = false;
    } catch (e: unknown) {
      this.failed = e instanceof Error ? e : new Error(String(e));
      throw e;
    }
    await this.releasePending();
    if (this.strict) {
      const report = this.check();
      if (!report.ok) throw new CorruptError(`strict mode: generation ${this.gen} fails the checker: ${report.errors.join("; ")}`);
    }
  }

  private async releasePending(): Promise<void> {
    const released = runsOf(this.pending);
    for (const b of this.pending) this.state[b] = FREE;
    this.pending = [];
    const trim = this.device.trim?.bind(this.device);
    if (!this.discard || trim === undefined) return;
    const B = this.blockSize;
    await Promise.all(released.map((r) => trim(r.start * B, r.count * B)));
  }
}

function newInode(inode: number, parent: number, kind: InodeKind, name: string, mtimeMs: number): Inode {
  return { inode, parent, kind, name, size: 0, mtimeMs, blocks: new Map(), children: new Map(), extentCache: undefined };
}

function checkOffLen(offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new InvalidArgumentError(`invalid offset/length ${offset}/${length}`);
  }
}
