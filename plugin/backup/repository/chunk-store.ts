/**
 * The chunk store: content-addressed chunks, zstd-compressed, appended into
 * pack files, found through a repository-wide index. It follows restic's
 * repository (packs + index files, newest index entry wins) with a fixed chunk
 * size (the array's CBT granularity, as PBS's fixed index does).
 *
 *   packs/ab/<32 hex>.pack           sealed packs (pack-format.ts); ab = first two hex digits
 *   packs/ab/<32 hex>.pack.partial   the pack this process is appending to
 *   index/<13-digit ms>-<8 hex>.idx  one per commit (index-format.ts)
 *   damaged/<hash>-<pack>-<offset>   empty file: that copy of the chunk failed its hash
 *
 * Invariants:
 *  - a chunk's name is the SHA-256 of its raw bytes (the chunk zero-padded to
 *    the chunk size); all-zero chunks are never stored (a disk map omits them);
 *  - every read decompresses and re-hashes: a mismatch throws CorruptError
 *    naming the chunk, its pack and offset, and the caller's context, and
 *    records the copy as damaged (a marker file plus removal from the in-memory
 *    index), so the next `put` of the same content stores a fresh copy and the
 *    index points at it (healing). A damaged copy is skipped when index files
 *    are loaded, so an older good copy, if any, is found again;
 *  - nothing is fsynced per chunk: `sync()` (called at a point's commit) seals
 *    the open pack, fsyncs every pack written and their directories, then
 *    writes this session's index file (temp, fsync, rename, fsync dir). Only
 *    then may a point that references the chunks be renamed into place;
 *  - a pack is sealed (trailer written, fsynced) before it is renamed from
 *    `.partial` to `.pack`, so a `.pack` file is always whole.
 *
 * Write API and parallelism: `putMany(chunks, {concurrency})` takes a batch;
 * each chunk is prepared (zero test, SHA-256, zstd) by the codec
 * (chunk-codec.ts: worker threads by default, the calling thread with
 * `threads: 0`), independently of the others, and only the append into
 * the pack is serialized. Reads decompress and verify through the same codec,
 * from pack handles kept open between reads (pack-handles.ts). Callers should
 * hand over batches (ImageBuilder.finish does), not chunk by chunk. `close()`
 * stops the workers and closes the handles.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { CorruptError, errorMessage, quote } from "../../../src/errors.js";
import { inlineCodec, workerCodec, type ChunkCodec } from "./chunk-codec.js";
import { syncDir, writeFileSynced } from "../../../src/fsio/durable-fs.js";
import { decodeIndex, encodeIndex, type IndexEntry } from "./index-format.js";
import { PackHandles } from "./pack-handles.js";
import { encodePackHeader, encodePackTrailer, PACK_ENTRY_SIZE, PACK_HEADER_SIZE, PACK_TAIL_SIZE, parsePackEntries, parsePackTail, type PackEntry } from "./pack-format.js";

const HASH = /^[0-9a-f]{64}$/;
const PACK_ID = /^[0-9a-f]{32}$/;
const INDEX_FILE = /^\d{13}-[0-9a-f]{8}\.idx$/;
const DAMAGED_FILE = /^([0-9a-f]{64})-([0-9a-f]{32})-(\d+)$/;

/** A pack is sealed once it reaches this size. */
export const PACK_TARGET = 32 * 1024 * 1024;

export interface ChunkLocation {
  /** Pack id, 32 hex digits. */
  readonly pack: string;
  readonly offset: number;
  readonly stored: number;
  readonly raw: number;
  readonly flags: number;
}

export interface ChunkStoreStats {
  /** Chunks written because the store lacked them (or had only a damaged copy). */
  stored: number;
  /** Raw bytes of those chunks, and what they took in packs. */
  storedBytes: number;
  packedBytes: number;
  /** Chunks whose content was already in the store. */
  deduplicated: number;
}

export interface PutOptions {
  /** Chunks prepared (hashed, compressed) at a time (default 4 per codec thread). */
  concurrency?: number;
}

export interface ChunkStoreOptions {
  packTarget?: number;
  /** Worker threads for hashing and zstd (default: one per core); 0 runs them on the calling thread. */
  threads?: number;
}

function damagedKey(hash: string, loc: ChunkLocation): string {
  return `${hash}-${loc.pack}-${loc.offset}`;
}

export function packPath(packsDir: string, id: string): string {
  return join(packsDir, id.slice(0, 2), `${id}.pack`);
}

/** Bytes a pack writer gathers before one write (appends are serialized, so one large write beats many small ones). */
const WRITE_BUFFER = 4 * 1024 * 1024;

/**
 * A pack being appended to, under its `.partial` name. Blobs gather in a
 * buffer and reach the file in writes of WRITE_BUFFER bytes; `buffered`
 * serves reads of blobs not yet written, so a chunk stored a moment ago reads
 * back like any other.
 */
class PackWriter {
  readonly entries: PackEntry[] = [];
  size = PACK_HEADER_SIZE;
  private readonly buf = Buffer.allocUnsafe(WRITE_BUFFER);
  /** File offset of buf[0]; buf holds [written, size). */
  private written = PACK_HEADER_SIZE;
  private constructor(
    readonly id: string,
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  static async create(packsDir: string): Promise<PackWriter> {
    const id = randomBytes(16).toString("hex");
    await mkdir(join(packsDir, id.slice(0, 2)), { recursive: true });
    const path = `${packPath(packsDir, id)}.partial`;
    const fh = await open(path, "wx");
    await fh.write(encodePackHeader(), 0, PACK_HEADER_SIZE, 0);
    return new PackWriter(id, path, fh);
  }

  async append(hash: Buffer, stored: Buffer, raw: number, flags: number): Promise<number> {
    if (this.size - this.written + stored.length > WRITE_BUFFER) await this.flush();
    const offset = this.size;
    if (stored.length > WRITE_BUFFER) {
      await this.fh.write(stored, 0, stored.length, offset);
      this.written = offset + stored.length;
    } else stored.copy(this.buf, offset - this.written);
    this.size += stored.length;
    this.entries.push({ hash, offset, stored: stored.length, raw, flags });
    return offset;
  }

  /** A copy of [offset, +length) if it is still in the buffer, else undefined (read the file). */
  buffered(offset: number, length: number): Buffer | undefined {
    if (offset < this.written || offset + length > this.size) return undefined;
    return Buffer.from(this.buf.subarray(offset - this.written, offset - this.written + length));
  }

  private async flush(): Promise<void> {
    const n = this.size - this.written;
    if (n === 0) return;
    // `written` moves only once the bytes are in the file: until then `buffered` serves them.
    await this.fh.write(this.buf, 0, n, this.written);
    this.written = this.size;
  }

  /** Writes the trailer, fsyncs, closes, and renames to the sealed name. A pack with no blobs is removed. */
  async seal(): Promise<boolean> {
    if (this.entries.length === 0) {
      await this.fh.close();
      await rm(this.path, { force: true });
      return false;
    }
    await this.flush();
    const trailer = encodePackTrailer(this.entries);
    await this.fh.write(trailer, 0, trailer.length, this.size);
    await this.fh.sync();
    await this.fh.close();
    await rename(this.path, this.path.slice(0, -".partial".length));
    return true;
  }
}

export interface PackContents {
  id: string;
  fileSize: number;
  entries: PackEntry[];
}

export class ChunkStore {
  readonly stats: ChunkStoreStats = { stored: 0, storedBytes: 0, packedBytes: 0, deduplicated: 0 };
  /** hash → its newest undamaged location. */
  private readonly index = new Map<string, ChunkLocation>();
  private readonly damaged = new Set<string>();
  private readonly loadedIndexFiles = new Set<string>();
  /** Index files that could not be read, with the reason (`check` reports them). */
  readonly indexErrors = new Map<string, string>();
  /** Locations stored by this process and not yet in an index file. */
  private pending: [string, ChunkLocation][] = [];
  private writer: PackWriter | undefined;
  private readonly dirtyDirs = new Set<string>();
  private readonly inflight = new Map<string, Promise<string>>();
  private appendQueue: Promise<unknown> = Promise.resolve();
  private readonly handles: PackHandles;
  readonly packsDir: string;
  readonly indexDir: string;
  readonly damagedDir: string;

  private constructor(
    readonly dir: string,
    readonly chunkSize: number,
    private readonly packTarget: number,
    private readonly codec: ChunkCodec,
  ) {
    this.packsDir = join(dir, "packs");
    this.indexDir = join(dir, "index");
    this.damagedDir = join(dir, "damaged");
    this.handles = new PackHandles((id) => this.openPack(id));
  }

  /** Opens the store of the repository at `dir`: loads the damaged list and every index file. */
  static async open(dir: string, chunkSize: number, opts: ChunkStoreOptions = {}): Promise<ChunkStore> {
    const codec = opts.threads === 0 ? inlineCodec() : workerCodec(opts.threads);
    const s = new ChunkStore(dir, chunkSize, opts.packTarget ?? PACK_TARGET, codec);
    for (const d of [s.packsDir, s.indexDir, s.damagedDir]) await mkdir(d, { recursive: true });
    await s.refresh();
    return s;
  }

  /** Loads damaged markers and index files written since the last load (another process may have committed). */
  async refresh(): Promise<void> {
    for (const f of await readdir(this.damagedDir).catch(() => [] as string[])) if (DAMAGED_FILE.test(f)) this.damaged.add(f);
    for (const [h, loc] of this.index) if (this.damaged.has(damagedKey(h, loc))) this.index.delete(h);
    const files = (await readdir(this.indexDir).catch(() => [] as string[])).filter((f) => INDEX_FILE.test(f) && !this.loadedIndexFiles.has(f)).sort();
    for (const f of files) {
      this.loadedIndexFiles.add(f);
      let entries: IndexEntry[];
      try {
        entries = decodeIndex(await readFile(join(this.indexDir, f)), `index/${f}`);
      } catch (e: unknown) {
        this.indexErrors.set(f, errorMessage(e));
        continue;
      }
      for (const e of entries) {
        const hash = e.hash.toString("hex");
        const loc: ChunkLocation = { pack: e.pack.toString("hex"), offset: e.offset, stored: e.stored, raw: e.raw, flags: e.flags };
        if (!this.damaged.has(damagedKey(hash, loc))) this.index.set(hash, loc);
      }
    }
  }

  /** Where the live copy of `hash` is, if the store has one. */
  locate(hash: string): ChunkLocation | undefined {
    return this.index.get(hash);
  }

  /** Every hash with a live location, and where. */
  locations(): IterableIterator<[string, ChunkLocation]> {
    return this.index.entries();
  }

  /** Every hash the index knows (live copies). */
  list(): string[] {
    return [...this.index.keys()];
  }

  isDamaged(hash: string, loc: ChunkLocation): boolean {
    return this.damaged.has(damagedKey(hash, loc));
  }

  damagedMarkers(): string[] {
    return [...this.damaged];
  }

  /** Stores one chunk; see putMany. */
  async put(data: Buffer): Promise<string | null> {
    return (await this.putMany([data]))[0] ?? null;
  }

  /**
   * Stores a batch of chunks (each padded to the chunk size); returns their
   * hashes in order, null for an all-zero chunk. Chunks are prepared
   * `concurrency` at a time; appends into the pack are serialized.
   */
  async putMany(chunks: readonly Buffer[], opts: PutOptions = {}): Promise<(string | null)[]> {
    const out: (string | null)[] = new Array<string | null>(chunks.length).fill(null);
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < chunks.length; i = next++) out[i] = await this.putOne(chunks[i] as Buffer);
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.concurrency ?? 16, chunks.length)) }, worker));
    return out;
  }

  /** `data` is consumed: the codec may move it to a worker thread. */
  private async putOne(data: Buffer): Promise<string | null> {
    const raw = data.length;
    const packed = await this.codec.pack(raw === this.chunkSize ? data : padTo(data, this.chunkSize));
    if (packed === null) return null;
    const hash = packed.hash;
    if (this.index.has(hash)) {
      this.stats.deduplicated++;
      return hash;
    }
    const running = this.inflight.get(hash);
    if (running !== undefined) {
      this.stats.deduplicated++;
      return running;
    }
    const p = this.append(hash, packed.stored, packed.flags);
    this.inflight.set(hash, p);
    try {
      return await p;
    } finally {
      this.inflight.delete(hash);
    }
  }

  /** Appends a packed chunk (chunk-codec.ts), whatever the index holds. */
  private async append(hash: string, stored: Buffer, flags: number): Promise<string> {
    const raw = this.chunkSize;
    await this.serialAppend(async () => {
      if (this.writer !== undefined && this.writer.size + stored.length > this.packTarget) await this.sealWriter();
      this.writer ??= await PackWriter.create(this.packsDir);
      const w = this.writer;
      const offset = await w.append(Buffer.from(hash, "hex"), stored, raw, flags);
      const loc: ChunkLocation = { pack: w.id, offset, stored: stored.length, raw, flags };
      this.index.set(hash, loc);
      this.pending.push([hash, loc]);
    });
    this.stats.stored++;
    this.stats.storedBytes += raw;
    this.stats.packedBytes += stored.length;
    return hash;
  }

  private serialAppend(fn: () => Promise<void>): Promise<void> {
    const p = this.appendQueue.then(fn);
    this.appendQueue = p.catch(() => undefined);
    return p;
  }

  private async sealWriter(): Promise<void> {
    const w = this.writer;
    this.writer = undefined;
    if (w === undefined) return;
    if (await w.seal()) this.dirtyDirs.add(join(this.packsDir, w.id.slice(0, 2)));
    this.dirtyDirs.add(this.packsDir);
  }

  /**
   * Makes everything stored so far durable and findable: seals the open pack,
   * fsyncs the pack directories, writes this session's index file. The commit
   * of a point calls it before the point's rename.
   */
  async sync(): Promise<void> {
    await this.serialAppend(() => this.sealWriter());
    for (const d of this.dirtyDirs) await syncDir(d);
    this.dirtyDirs.clear();
    if (this.pending.length === 0) return;
    const name = await this.writeIndexFile(this.pending);
    this.loadedIndexFiles.add(name);
    this.pending = [];
  }

  /** Writes an index file (temp, fsync, rename, fsync dir); returns its name. */
  async writeIndexFile(entries: readonly (readonly [string, ChunkLocation])[]): Promise<string> {
    const body = encodeIndex(entries.map(([h, l]) => ({ hash: Buffer.from(h, "hex"), pack: Buffer.from(l.pack, "hex"), offset: l.offset, stored: l.stored, raw: l.raw, flags: l.flags })));
    // Names sort by time; a name no later than an existing one would lose "newest wins", so step past it.
    let ms = Date.now();
    const newest = [...this.loadedIndexFiles].sort().at(-1);
    if (newest !== undefined) ms = Math.max(ms, Number(newest.slice(0, 13)) + 1);
    const name = `${String(ms).padStart(13, "0")}-${randomBytes(4).toString("hex")}.idx`;
    const tmp = join(this.indexDir, `.tmp-${name}`);
    await writeFileSynced(tmp, body);
    await rename(tmp, join(this.indexDir, name));
    await syncDir(this.indexDir);
    return name;
  }

  /** The verified raw bytes of `hash` (a zero chunk for null). `where` names the reader for errors. */
  async get(hash: string | null, where = "read"): Promise<Buffer> {
    if (hash === null) return Buffer.alloc(this.chunkSize);
    if (!HASH.test(hash)) throw new CorruptError(`${where}: invalid chunk hash ${quote(hash)}`);
    let loc = this.index.get(hash);
    if (loc === undefined) {
      await this.refresh();
      loc = this.index.get(hash);
    }
    if (loc === undefined) throw new CorruptError(`${where}: chunk ${hash} has no good copy in the repository (missing or damaged; a new backup of the same data stores it again)`);
    try {
      return await this.readAt(hash, loc);
    } catch (e: unknown) {
      if (!(e instanceof CorruptError)) throw e;
      await this.markDamaged(hash, loc);
      // Another process may have stored a good copy since we loaded the index.
      await this.refresh();
      const again = this.index.get(hash);
      if (again !== undefined && (again.pack !== loc.pack || again.offset !== loc.offset)) return this.get(hash, where);
      throw new CorruptError(`${where}: chunk ${hash} (pack ${loc.pack} offset ${loc.offset}): ${e.message}`);
    }
  }

  /** Reads, decompresses and re-hashes one copy; CorruptError on any mismatch. Does not record damage. */
  async readAt(hash: string, loc: ChunkLocation): Promise<Buffer> {
    let stored = this.writer?.id === loc.pack ? this.writer.buffered(loc.offset, loc.stored) : undefined;
    if (stored === undefined) {
      const into = Buffer.allocUnsafe(loc.stored);
      await this.handles.use(loc.pack, async (fh) => {
        const { bytesRead } = await fh.read(into, 0, loc.stored, loc.offset);
        if (bytesRead !== loc.stored) throw new CorruptError(`pack ${loc.pack} is truncated (${bytesRead} of ${loc.stored} bytes at ${loc.offset})`);
      });
      stored = into;
    }
    if (loc.raw !== this.chunkSize) throw new CorruptError(`holds ${loc.raw} bytes, expected ${this.chunkSize}`);
    return this.codec.unpack(stored, { hash, raw: loc.raw, flags: loc.flags });
  }

  private async openPack(id: string): Promise<FileHandle> {
    const path = packPath(this.packsDir, id);
    try {
      return await open(path, "r");
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    try {
      // Still being appended to by this process.
      return await open(`${path}.partial`, "r");
    } catch {
      throw new CorruptError(`pack ${id} is missing`);
    }
  }

  /** Stops the codec's workers and closes the pack handles. Stored chunks are not synced: call sync() first. */
  async close(): Promise<void> {
    await this.handles.closeAll();
    await this.codec.close();
  }

  /** Records that this copy of `hash` is bad: the next put of that content stores a new copy. */
  async markDamaged(hash: string, loc: ChunkLocation): Promise<void> {
    const key = damagedKey(hash, loc);
    this.damaged.add(key);
    const live = this.index.get(hash);
    if (live !== undefined && live.pack === loc.pack && live.offset === loc.offset) this.index.delete(hash);
    // Best effort: a read-only repository still fails the read, it just cannot remember.
    await writeFile(join(this.damagedDir, key), "").catch(() => undefined);
  }

  /** Re-reads a chunk: the failure reason, or undefined when it is intact. */
  async check(hash: string): Promise<string | undefined> {
    try {
      await this.get(hash, "verify");
      return undefined;
    } catch (e: unknown) {
      return errorMessage(e);
    }
  }

  /** Sealed pack ids on disk, and `.partial` leftovers (paths). */
  async listPacks(): Promise<{ packs: string[]; partial: string[] }> {
    const packs: string[] = [];
    const partial: string[] = [];
    for (const sub of await readdir(this.packsDir).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{2}$/.test(sub)) continue;
      for (const f of await readdir(join(this.packsDir, sub)).catch(() => [] as string[])) {
        const id = f.slice(0, 32);
        if (!PACK_ID.test(id) || id.slice(0, 2) !== sub) continue;
        if (f === `${id}.pack`) packs.push(id);
        else if (f === `${id}.pack.partial`) partial.push(join(this.packsDir, sub, f));
      }
    }
    return { packs, partial };
  }

  /** Index files a killed process left half-written (`index/.tmp-*`): garbage that prune's index compaction removes. */
  async unfinishedIndexFiles(): Promise<string[]> {
    return (await readdir(this.indexDir).catch(() => [] as string[])).filter((f) => f.startsWith(".tmp-"));
  }

  /** A sealed pack's trailer, checked (CorruptError when it is damaged). */
  async readPack(id: string): Promise<PackContents> {
    const path = packPath(this.packsDir, id);
    const what = `pack ${id}`;
    const fh = await open(path, "r");
    try {
      const fileSize = (await fh.stat()).size;
      const head = Buffer.alloc(PACK_HEADER_SIZE);
      const tail = Buffer.alloc(PACK_TAIL_SIZE);
      await fh.read(head, 0, PACK_HEADER_SIZE, 0);
      if (fileSize < PACK_HEADER_SIZE + PACK_TAIL_SIZE) throw new CorruptError(`${what}: too short for a pack (${fileSize} bytes)`);
      if (!head.equals(encodePackHeader())) throw new CorruptError(`${what}: bad pack header`);
      await fh.read(tail, 0, PACK_TAIL_SIZE, fileSize - PACK_TAIL_SIZE);
      const info = parsePackTail(tail, fileSize, what);
      const entries = Buffer.alloc(info.count * PACK_ENTRY_SIZE);
      await fh.read(entries, 0, entries.length, info.entriesOffset);
      return { id, fileSize, entries: parsePackEntries(entries, tail, info, what) };
    } finally {
      await fh.close();
    }
  }

  /** Replaces every index file by one listing `entries` (repair, prune's compaction); drops damaged markers not in `keepMarkers`. */
  async replaceIndex(entries: readonly (readonly [string, ChunkLocation])[]): Promise<void> {
    const old = (await readdir(this.indexDir).catch(() => [] as string[])).filter((f) => INDEX_FILE.test(f) || f.startsWith(".tmp-"));
    const name = await this.writeIndexFile(entries);
    for (const f of old) await rm(join(this.indexDir, f), { force: true });
    await syncDir(this.indexDir);
    this.index.clear();
    this.loadedIndexFiles.clear();
    this.indexErrors.clear();
    this.loadedIndexFiles.add(name);
    for (const [h, l] of entries) if (!this.damaged.has(damagedKey(h, l))) this.index.set(h, l);
  }

  /** Removes damaged markers for which `drop` says so (their copy is gone). */
  async dropMarkers(drop: (hash: string, pack: string, offset: number) => boolean): Promise<number> {
    let n = 0;
    for (const key of [...this.damaged]) {
      const m = DAMAGED_FILE.exec(key);
      if (!m || drop(m[1] ?? "", m[2] ?? "", Number(m[3]))) {
        this.damaged.delete(key);
        await rm(join(this.damagedDir, key), { force: true });
        n++;
      }
    }
    return n;
  }

  async deletePack(id: string): Promise<number> {
    const path = packPath(this.packsDir, id);
    const size = (await stat(path).catch(() => ({ size: 0 }))).size;
    this.handles.forget(id);
    await rm(path, { force: true });
    this.dirtyDirs.add(join(this.packsDir, id.slice(0, 2)));
    return size;
  }

  /** Copies `hash` (verified) into a new pack even though the index knows it (prune's rewrite). */
  async rewrite(hash: string): Promise<void> {
    const packed = await this.codec.pack(await this.get(hash, "prune rewrite"));
    if (packed !== null) await this.append(hash, packed.stored, packed.flags);
  }
}

function padTo(data: Buffer, size: number): Buffer {
  const out = Buffer.alloc(size);
  data.copy(out, 0, 0, Math.min(size, data.length));
  return out;
}
