/**
 * The backup repository: a directory anyone can inspect with `ls`.
 *
 *   repo.json                      { version, id, chunkSize }   (id names this repository's snapshots on arrays)
 *   chunks/ab/ab12…                content-addressed chunks (chunk-store.ts)
 *   points/<id>/point.json         a committed backup point (catalog.ts)
 *   points/<id>/<disk>.index.json  its disks' chunk indexes
 *   tmp/<id>/                      a point being written (invisible to readers)
 *   locks/<name>.lock              pid of the process holding a lock
 *
 * Commit protocol: chunks are stored and their directories fsynced; the
 * indexes and point.json are written and fsynced under tmp/<id>/; tmp/<id> is
 * renamed to points/<id> and points/ fsynced. A point is therefore visible
 * whole or not at all. A crash anywhere before the rename leaves tmp/<id>
 * (removed by the next `cleanup()`) and perhaps unreferenced chunks (removed by
 * `prune`'s garbage collection); committed points are never touched.
 *
 * Locks: a backup holds `vm-<name>` (one backup per VM at a time: its cleanup
 * of leaked snapshots must not hit a running backup's), prune holds `prune` and
 * refuses while any backup runs (a running backup's new chunks are not yet
 * referenced by any point). A lock whose pid is gone is stale and taken over.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { CorruptError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../../../src/errors.js";
import { stopAt } from "../../../src/failpoints.js";
import { CATALOG_VERSION, parseDiskIndex, parsePoint, type BackupPoint, type DiskIndex, type PointDisk } from "./catalog.js";
import { ChunkStore } from "./chunk-store.js";
import { syncDir, writeFileAtomic, writeFileSynced } from "./durable-fs.js";
import { ImageBuilder } from "./image-builder.js";
import { ImageReader } from "./image-reader.js";

export const DEFAULT_CHUNK_SIZE = 1024 * 1024;

export interface RepositoryOptions {
  /** Create the repository if the directory holds none. */
  create?: boolean;
  /** Chunk size for a new repository (a power of two, 4 KiB to 64 MiB). */
  chunkSize?: number;
}

export interface Lock {
  release(): Promise<void>;
}

export interface PruneReport {
  removedPoints: string[];
  keptPoints: string[];
  freedChunks: number;
  freedBytes: number;
}

export interface PendingPoint {
  readonly id: string;
  /** A builder for one disk image, starting from `base` (undefined: an empty image). */
  image(base: DiskIndex | undefined): ImageBuilder;
  /** Records a finished disk image under `name`. */
  addDisk(name: string, index: DiskIndex): Promise<void>;
  /** Makes the point visible, atomically. */
  commit(point: BackupPoint): Promise<void>;
  /** Drops the uncommitted point. */
  abandon(): Promise<void>;
}

export class Repository {
  readonly chunks: ChunkStore;

  private constructor(
    readonly dir: string,
    readonly chunkSize: number,
    /** 8 hex digits, random at creation: array snapshots this repository keeps as bases carry it in their names. */
    readonly id: string,
  ) {
    this.chunks = new ChunkStore(join(dir, "chunks"), chunkSize);
  }

  static async open(dir: string, opts: RepositoryOptions = {}): Promise<Repository> {
    let text: string | undefined;
    try {
      text = await readFile(join(dir, "repo.json"), "utf8");
    } catch {
      text = undefined;
    }
    if (text === undefined) {
      if (opts.create !== true) throw new NotFoundError(`${dir} is not a backup repository (no repo.json)`);
      const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
      if (!Number.isInteger(Math.log2(chunkSize)) || chunkSize < 4096 || chunkSize > 64 * 1024 * 1024) throw new InvalidArgumentError(`chunk size ${chunkSize} must be a power of two between 4 KiB and 64 MiB`);
      for (const d of ["chunks", "points", "tmp", "locks"]) await mkdir(join(dir, d), { recursive: true });
      const id = randomBytes(4).toString("hex");
      await writeFileAtomic(join(dir, "repo.json"), JSON.stringify({ version: CATALOG_VERSION, id, chunkSize }, null, 2) + "\n", dir);
      return new Repository(dir, chunkSize, id);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new CorruptError(`${dir}/repo.json is not JSON`);
    }
    if (typeof parsed !== "object" || parsed === null) throw new CorruptError(`${dir}/repo.json: expected an object`);
    const cs = (parsed as Record<string, unknown>)["chunkSize"];
    if (typeof cs !== "number" || !Number.isInteger(cs) || cs <= 0) throw new CorruptError(`${dir}/repo.json: invalid chunkSize`);
    const id = (parsed as Record<string, unknown>)["id"];
    if (typeof id !== "string" || !/^[0-9a-f]{8}$/.test(id)) throw new CorruptError(`${dir}/repo.json: invalid id`);
    for (const d of ["chunks", "points", "tmp", "locks"]) await mkdir(join(dir, d), { recursive: true });
    return new Repository(dir, cs, id);
  }

  /** Removes what crashed runs left under tmp/; returns the names removed. */
  async cleanup(): Promise<string[]> {
    const names = await readdir(join(this.dir, "tmp")).catch(() => [] as string[]);
    for (const n of names) await rm(join(this.dir, "tmp", n), { recursive: true, force: true });
    return names;
  }

  /** Committed points, oldest first; only `vm`'s when given. */
  async list(vm?: string): Promise<BackupPoint[]> {
    const ids = await readdir(join(this.dir, "points")).catch(() => [] as string[]);
    const out: BackupPoint[] = [];
    for (const id of ids) {
      const p = await this.readPoint(id);
      if (vm === undefined || p.vm === vm) out.push(p);
    }
    return out.sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : 1));
  }

  async latest(vm: string): Promise<BackupPoint | undefined> {
    return (await this.list(vm)).at(-1);
  }

  /** A point by id, unique id prefix, or "VM@latest". */
  async get(ref: string): Promise<BackupPoint> {
    const at = /^(.+)@latest$/.exec(ref);
    if (at?.[1] !== undefined) {
      const p = await this.latest(at[1]);
      if (!p) throw new NotFoundError(`no backup point of VM "${at[1]}"`);
      return p;
    }
    const ids = await readdir(join(this.dir, "points")).catch(() => [] as string[]);
    if (ids.includes(ref)) return this.readPoint(ref);
    const hits = ids.filter((i) => i.startsWith(ref));
    if (hits.length === 1 && hits[0] !== undefined) return this.readPoint(hits[0]);
    if (hits.length > 1) throw new InvalidArgumentError(`"${ref}" names ${hits.length} points: ${hits.join(", ")}`);
    throw new NotFoundError(`no backup point "${ref}"`);
  }

  async index(point: BackupPoint, disk: string): Promise<DiskIndex> {
    if (!point.disks.some((d) => d.name === disk)) throw new NotFoundError(`point ${point.id} has no disk "${disk}" (disks: ${point.disks.map((d) => d.name).join(", ")})`);
    const path = join(this.dir, "points", point.id, `${disk}.index.json`);
    return parseDiskIndex(await readJson(path), path);
  }

  async openImage(point: BackupPoint, disk: string): Promise<ImageReader> {
    return new ImageReader(this.chunks, await this.index(point, disk));
  }

  disk(point: BackupPoint, name: string): PointDisk {
    const d = point.disks.find((x) => x.name === name);
    if (!d) throw new NotFoundError(`point ${point.id} has no disk "${name}" (disks: ${point.disks.map((x) => x.name).join(", ")})`);
    return d;
  }

  newPointId(vm: string, at = new Date()): string {
    const t = at.toISOString().replace(/[-:]/g, "").replace(/\.(\d+)Z$/, "$1Z");
    return `${vm}-${t}-${randomBytes(2).toString("hex")}`;
  }

  /** Starts a point: its files go under tmp/<id> until commit. */
  async begin(id: string): Promise<PendingPoint> {
    const tmp = join(this.dir, "tmp", id);
    await mkdir(tmp, { recursive: true });
    await syncDir(join(this.dir, "tmp"));
    let done = false;
    return {
      id,
      image: (base) => new ImageBuilder(this.chunks, base),
      addDisk: async (name, index) => {
        await writeFileSynced(join(tmp, `${name}.index.json`), JSON.stringify(index));
      },
      commit: async (point) => {
        if (done) throw new FailedPreconditionError(`point ${id} was already committed or abandoned`);
        await this.chunks.sync();
        await writeFileSynced(join(tmp, "point.json"), JSON.stringify(point, null, 2) + "\n");
        await syncDir(tmp);
        await stopAt("before-rename");
        await rename(tmp, join(this.dir, "points", id));
        await syncDir(join(this.dir, "points"));
        await syncDir(join(this.dir, "tmp"));
        done = true;
      },
      abandon: async () => {
        if (done) return;
        done = true;
        await rm(tmp, { recursive: true, force: true });
      },
    };
  }

  /** Deletes all but the newest `keep` points of each VM (or of `vm`), then collects unreferenced chunks. */
  async prune(keep: number, vm?: string): Promise<PruneReport> {
    if (!Number.isInteger(keep) || keep < 1) throw new InvalidArgumentError(`--keep must be at least 1, got ${keep}`);
    const lock = await this.lock("prune");
    try {
      for (const n of await readdir(join(this.dir, "locks"))) {
        if (n.startsWith("vm-") && (await lockHolder(join(this.dir, "locks", n))) !== undefined) throw new FailedPreconditionError(`a backup is running (${n}); prune later`);
      }
      const all = await this.list();
      const byVm = new Map<string, BackupPoint[]>();
      for (const p of all) byVm.set(p.vm, [...(byVm.get(p.vm) ?? []), p]);
      const removed: string[] = [];
      for (const [name, points] of byVm) {
        if (vm !== undefined && name !== vm) continue;
        for (const p of points.slice(0, Math.max(0, points.length - keep))) {
          const trash = join(this.dir, "tmp", `deleted-${p.id}`);
          await rename(join(this.dir, "points", p.id), trash);
          await syncDir(join(this.dir, "points"));
          await rm(trash, { recursive: true, force: true });
          removed.push(p.id);
        }
      }
      const kept = await this.list();
      const referenced = new Set<string>();
      for (const p of kept) for (const d of p.disks) for (const h of (await this.index(p, d.name)).chunks) if (h !== null) referenced.add(h);
      const freed = await this.chunks.gc(referenced);
      return { removedPoints: removed, keptPoints: kept.map((p) => p.id), freedChunks: freed.chunks, freedBytes: freed.bytes };
    } finally {
      await lock.release();
    }
  }

  /** Takes `locks/<name>.lock`, or fails if a live process holds it. */
  async lock(name: string): Promise<Lock> {
    const path = join(this.dir, "locks", `${name}.lock`);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fh = await open(path, "wx");
        await fh.writeFile(String(process.pid));
        await fh.close();
        return { release: () => rm(path, { force: true }) };
      } catch (e: unknown) {
        if (!(e instanceof Error) || (e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        const holder = await lockHolder(path);
        if (holder !== undefined) throw new FailedPreconditionError(`${name} is locked by running process ${holder}`);
        await rm(path, { force: true });
      }
    }
    throw new FailedPreconditionError(`could not take lock ${name}`);
  }

  private async readPoint(id: string): Promise<BackupPoint> {
    const path = join(this.dir, "points", id, "point.json");
    return parsePoint(await readJson(path), path);
  }
}

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e: unknown) {
    throw new CorruptError(`${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new CorruptError(`${path} is not JSON`);
  }
}

/** The pid in a lock file if that process is alive. */
async function lockHolder(path: string): Promise<number | undefined> {
  const pid = Number((await readFile(path, "utf8").catch(() => "")).trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (e: unknown) {
    return (e as NodeJS.ErrnoException).code === "EPERM" ? pid : undefined;
  }
}
