/**
 * Content-addressed chunk store: `chunks/<h0h1>/<sha256 hex>`, each chunk a
 * fixed-size block of a disk image (the last one zero-padded). Identical content
 * is stored once, which is what makes every backup point a full synthetic image
 * at the cost of an incremental. All-zero chunks are never stored: an index
 * records them as `null` (a hole).
 *
 * A chunk appears by rename from a fsynced temp file, so a chunk file is whole
 * or absent. The directories touched are fsynced by `sync()`, which the
 * repository calls before it commits a point that references them. Chunks no
 * point references (a crashed run, a pruned point) are reclaimed by `gc`.
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { CorruptError } from "../../../src/errors.js";
import { syncDir, writeFileSynced } from "./durable-fs.js";

const HASH = /^[0-9a-f]{64}$/;

export interface ChunkStoreStats {
  /** Chunks written because the store lacked them. */
  stored: number;
  storedBytes: number;
  /** Chunks whose content was already in the store. */
  deduplicated: number;
}

export function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

export function isZero(data: Buffer): boolean {
  // Compare 8 bytes at a time where we can.
  let i = 0;
  for (; i + 8 <= data.length; i += 8) if (data.readBigUInt64LE(i) !== 0n) return false;
  for (; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}

export class ChunkStore {
  readonly stats: ChunkStoreStats = { stored: 0, storedBytes: 0, deduplicated: 0 };
  private readonly dirtyDirs = new Set<string>();
  private readonly known = new Set<string>();

  constructor(
    readonly dir: string,
    readonly chunkSize: number,
  ) {}

  pathOf(hash: string): string {
    return join(this.dir, hash.slice(0, 2), hash);
  }

  /** Stores a chunk (padded to the chunk size); returns its hash, or null for an all-zero chunk. */
  async put(data: Buffer): Promise<string | null> {
    const chunk = data.length === this.chunkSize ? data : padTo(data, this.chunkSize);
    if (isZero(chunk)) return null;
    const hash = sha256(chunk);
    if (this.known.has(hash) || (await exists(this.pathOf(hash)))) {
      this.known.add(hash);
      this.stats.deduplicated++;
      return hash;
    }
    const sub = join(this.dir, hash.slice(0, 2));
    await mkdir(sub, { recursive: true });
    const tmp = join(this.dir, `.tmp-${randomUUID()}`);
    try {
      await writeFileSynced(tmp, chunk);
      await rename(tmp, this.pathOf(hash));
    } catch (e: unknown) {
      await rm(tmp, { force: true });
      throw e;
    }
    this.dirtyDirs.add(sub);
    this.dirtyDirs.add(this.dir);
    this.known.add(hash);
    this.stats.stored++;
    this.stats.storedBytes += chunk.length;
    return hash;
  }

  async get(hash: string | null): Promise<Buffer> {
    if (hash === null) return Buffer.alloc(this.chunkSize);
    if (!HASH.test(hash)) throw new CorruptError(`invalid chunk hash "${hash}"`);
    let data: Buffer;
    try {
      data = await readFile(this.pathOf(hash));
    } catch (e: unknown) {
      throw new CorruptError(`chunk ${hash} is missing from the repository (${e instanceof Error ? e.message : String(e)})`);
    }
    if (data.length !== this.chunkSize) throw new CorruptError(`chunk ${hash} has ${data.length} bytes, expected ${this.chunkSize}`);
    return data;
  }

  /** Re-hashes a chunk: the failure reason, or undefined when it is intact. */
  async check(hash: string): Promise<string | undefined> {
    try {
      const data = await this.get(hash);
      const actual = sha256(data);
      return actual === hash ? undefined : `chunk ${hash} hashes to ${actual}`;
    } catch (e: unknown) {
      return e instanceof Error ? e.message : String(e);
    }
  }

  /** Makes every chunk stored so far durable (fsync the directories their renames touched). */
  async sync(): Promise<void> {
    for (const d of this.dirtyDirs) await syncDir(d);
    this.dirtyDirs.clear();
  }

  /** Every stored chunk hash. */
  async list(): Promise<string[]> {
    const out: string[] = [];
    let subs: string[];
    try {
      subs = await readdir(this.dir);
    } catch {
      return out;
    }
    for (const s of subs) {
      if (!/^[0-9a-f]{2}$/.test(s)) continue;
      for (const f of await readdir(join(this.dir, s))) if (HASH.test(f)) out.push(f);
    }
    return out;
  }

  /** Deletes every chunk not in `keep` and leftover temp files; returns what it freed. */
  async gc(keep: ReadonlySet<string>): Promise<{ chunks: number; bytes: number }> {
    let chunks = 0;
    let bytes = 0;
    for (const h of await this.list()) {
      if (keep.has(h)) continue;
      const p = this.pathOf(h);
      bytes += (await stat(p)).size;
      await rm(p, { force: true });
      this.known.delete(h);
      chunks++;
    }
    for (const f of await readdir(this.dir).catch(() => [] as string[])) if (f.startsWith(".tmp-")) await rm(join(this.dir, f), { force: true });
    return { chunks, bytes };
  }
}

function padTo(data: Buffer, size: number): Buffer {
  const out = Buffer.alloc(size);
  data.copy(out, 0, 0, Math.min(size, data.length));
  return out;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
