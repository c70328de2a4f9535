/**
 * The backup repository, format version 2 (docs/backup.md, "Repository format
 * v2"): a directory anyone can inspect with `ls`.
 *
 *   repo.json                  { version: 2, id, chunkSize, hash, compression }
 *   packs/ab/<id>.pack         compressed chunks + self-describing trailer (pack-format.ts)
 *   index/<ms>-<rand>.idx      where each chunk lives (index-format.ts); newest wins
 *   damaged/<hash>-<pack>-<o>  copies found bad (chunk-store.ts)
 *   points/<id>/point.json     a committed backup point (catalog.ts)
 *   points/<id>/<disk>.map     its disks' sparse chunk maps (disk-map.ts)
 *   tmp/<id>/                  a point being written (invisible to readers)
 *   tmp/<id>.owner             pid of the process writing tmp/<id>
 *   locks/<name>.lock          pid of the process holding a lock
 *   locks/serve-<pid>-<point>.lock  a shared hold: process <pid> serves <point>
 *
 * Commit protocol: the chunk store seals its open pack, fsyncs the packs and
 * their directories, and writes + fsyncs + renames its index file; the maps and
 * point.json are written and fsynced under tmp/<id>/; tmp/<id> is renamed to
 * points/<id> and points/ fsynced. A point is therefore visible whole or not
 * at all, and everything it references is durable before it appears. A crash
 * before the rename leaves tmp/<id> (removed by the next `cleanup()`) and
 * perhaps packs and index entries no point uses (prune collects them).
 *
 * tmp/ is shared by every backup of the repository (one per VM may run at
 * once), so `cleanup()` removes only entries whose owner is gone: each entry
 * gets its `.owner` file (the writer's pid) *before* it is created, so no
 * live writer's entry is ever ownerless; an entry without one, or whose
 * owner's pid is dead, was left by a killed process.
 *
 * Damage stays local: every entry under points/ is scanned on its own; one
 * that is not a readable point (a stray file, an empty directory, a torn
 * point.json, an unreadable map, a missing pack) is listed as damaged with the
 * reason, and every command keeps working on the others. A point whose map
 * references a chunk copy found bad stays listed (its other ranges read, the
 * bad range fails with CORRUPT) until a backup stores the content again.
 *
 * Locks: a backup holds `vm-<name>` (one backup per VM at a time); prune,
 * delete and check --repair hold `maintenance` and refuse while any backup
 * runs (a running backup's new chunks are not yet referenced by any point). A
 * lock whose pid is gone is stale and taken over. `backup serve` and `backup
 * export` hold a *shared* lock on the point they read (one file per process,
 * `holdPoint`): prune keeps a held point (and says so) and delete refuses it,
 * naming the process, since deleting it would pull the data from under its
 * NBD clients. A hold whose pid is gone counts for nothing.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { CorruptError, FailedPreconditionError, InvalidArgumentError, NotFoundError, UnsupportedError, errorMessage, quote } from "../../../src/errors.js";
import { stopAt } from "../../../src/failpoints.js";
import { parsePoint, type BackupPoint, type PointDisk } from "./catalog.js";
import { ChunkStore, type ChunkStoreOptions } from "./chunk-store.js";
import { decodeDiskMap, encodeDiskMap, validChunkSize, type DiskMap } from "./disk-map.js";
import { syncDir, writeFileAtomic, writeFileSynced } from "../../../src/fsio/durable-fs.js";
import { ImageBuilder } from "./image-builder.js";
import { ImageReader } from "./image-reader.js";
import { collectPacks, type PackGcReport } from "./pack-gc.js";

export const REPO_VERSION = 2;
/** The chunk size of a new repository when the array does not say its CBT granularity. */
export const DEFAULT_CHUNK_SIZE = 64 * 1024;
const POINT_ID = /^[A-Za-z0-9._-]+$/;

export interface RepositoryOptions {
  /** Create the repository if the directory holds none. */
  create?: boolean;
  /** Chunk size for a new repository (a power of two, 4 KiB to 64 MiB). */
  chunkSize?: number;
  /** Seal packs at this size (tests use small packs). */
  packTarget?: number;
  /** Worker threads for hashing and zstd (chunk-store.ts; default one per core, 0 = the calling thread). */
  threads?: number;
}

export interface Lock {
  release(): Promise<void>;
}

export interface PruneReport extends PackGcReport {
  removedPoints: string[];
  keptPoints: string[];
  /** Points prune would have removed but kept, because a live process serves them. */
  servedPoints: { id: string; pids: number[] }[];
}

const SERVE_LOCK = /^serve-(\d+)-(.+)\.lock$/;
const OWNER_SUFFIX = ".owner";

/** One entry under points/: a readable point, or why it is not one. */
export type PointEntry = { id: string; status: "ok"; point: BackupPoint } | { id: string; status: "damaged"; reason: string; point?: BackupPoint };

export interface PendingPoint {
  readonly id: string;
  /** A builder for one disk image, starting from `base` (undefined: an empty image). */
  image(base: DiskMap | undefined): ImageBuilder;
  /** Records a finished disk image under `name`. */
  addDisk(name: string, map: DiskMap): Promise<void>;
  /** Makes the point visible, atomically. */
  commit(point: BackupPoint): Promise<void>;
  /** Drops the uncommitted point. */
  abandon(): Promise<void>;
}

export class Repository {
  /** Maps of committed points (immutable once committed), by "point/disk". */
  private readonly maps = new Map<string, DiskMap>();

  private constructor(
    readonly dir: string,
    readonly chunkSize: number,
    /** 8 hex digits, random at creation: array snapshots this repository keeps as bases carry it in their names. */
    readonly id: string,
    readonly chunks: ChunkStore,
  ) {}

  static async open(dir: string, opts: RepositoryOptions = {}): Promise<Repository> {
    let text: string | undefined;
    try {
      text = await readFile(join(dir, "repo.json"), "utf8");
    } catch {
      text = undefined;
    }
    const storeOpts: ChunkStoreOptions = {};
    if (opts.packTarget !== undefined) storeOpts.packTarget = opts.packTarget;
    if (opts.threads !== undefined) storeOpts.threads = opts.threads;
    if (text === undefined) {
      if (opts.create !== true) throw new NotFoundError(`${dir} is not a backup repository (no repo.json)`);
      const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
      if (!validChunkSize(chunkSize)) throw new InvalidArgumentError(`chunk size ${chunkSize} must be a power of two between 4 KiB and 64 MiB`);
      for (const d of ["points", "tmp", "locks"]) await mkdir(join(dir, d), { recursive: true });
      const id = randomBytes(4).toString("hex");
      const store = await ChunkStore.open(dir, chunkSize, storeOpts);
      await writeFileAtomic(join(dir, "repo.json"), JSON.stringify({ version: REPO_VERSION, id, chunkSize, hash: "sha256", compression: "zstd" }, null, 2) + "\n", dir);
      return new Repository(dir, chunkSize, id, store);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new CorruptError(`${dir}/repo.json is not JSON`);
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new CorruptError(`${dir}/repo.json: expected an object`);
    const o = parsed as Record<string, unknown>;
    if (o["version"] !== REPO_VERSION) {
      const v = typeof o["version"] === "number" ? String(o["version"]) : JSON.stringify(o["version"]);
      throw new UnsupportedError(
        `${dir} is a version ${v} backup repository; this sanbox reads only version ${REPO_VERSION} (packed, compressed, verified chunks). ` +
          `Leave it as it is (read it with the sanbox release that wrote it) and back up into a new repository: pass a new --repo directory, and the first run there is a full backup.`,
      );
    }
    const cs = o["chunkSize"];
    if (typeof cs !== "number" || !validChunkSize(cs)) throw new CorruptError(`${dir}/repo.json: invalid chunkSize`);
    const id = o["id"];
    if (typeof id !== "string" || !/^[0-9a-f]{8}$/.test(id)) throw new CorruptError(`${dir}/repo.json: invalid id`);
    if (o["hash"] !== "sha256" || o["compression"] !== "zstd") throw new CorruptError(`${dir}/repo.json: unknown hash or compression`);
    for (const d of ["points", "tmp", "locks"]) await mkdir(join(dir, d), { recursive: true });
    return new Repository(dir, cs, id, await ChunkStore.open(dir, cs, storeOpts));
  }

  /** Stops the chunk store's worker threads and closes its pack handles (committed data needs nothing more). */
  close(): Promise<void> {
    return this.chunks.close();
  }

  /**
   * Removes what killed processes left under tmp/ (entries whose owner is
   * gone; a live backup's entry, of another VM say, stays); returns the names removed.
   */
  async cleanup(): Promise<string[]> {
    const tmp = join(this.dir, "tmp");
    const names = await readdir(tmp).catch(() => [] as string[]);
    const removed: string[] = [];
    for (const n of names) {
      if (n.endsWith(OWNER_SUFFIX)) {
        // An owner file whose entry is gone (a crash between the two): drop it once its pid is dead.
        if (!names.includes(n.slice(0, -OWNER_SUFFIX.length)) && (await lockHolder(join(tmp, n))) === undefined) await rm(join(tmp, n), { force: true });
        continue;
      }
      if ((await lockHolder(join(tmp, n + OWNER_SUFFIX))) !== undefined) continue;
      await rm(join(tmp, n), { recursive: true, force: true });
      await rm(join(tmp, n + OWNER_SUFFIX), { force: true });
      removed.push(n);
    }
    return removed;
  }

  /** Claims tmp/<name> for this process: the owner file first, so cleanup never sees a live entry without one. */
  private async claimTmp(name: string): Promise<string> {
    await writeFileSynced(join(this.dir, "tmp", name + OWNER_SUFFIX), String(process.pid));
    return join(this.dir, "tmp", name);
  }

  private async releaseTmp(name: string): Promise<void> {
    await rm(join(this.dir, "tmp", name + OWNER_SUFFIX), { force: true });
  }

  /**
   * A shared hold on `pointId` for as long as this process serves it
   * (`backup serve`, `backup export`): prune keeps the point, delete refuses it.
   */
  async holdPoint(pointId: string): Promise<Lock> {
    const path = join(this.dir, "locks", `serve-${process.pid}-${pointId}.lock`);
    await writeFileSynced(path, String(process.pid));
    return { release: () => rm(path, { force: true }) };
  }

  /** The live processes holding `pointId` (see holdPoint); holds of dead processes are removed. */
  async pointHolders(pointId: string): Promise<number[]> {
    const out: number[] = [];
    for (const n of await readdir(join(this.dir, "locks")).catch(() => [] as string[])) {
      const m = SERVE_LOCK.exec(n);
      if (m === null || m[2] !== pointId) continue;
      const pid = await lockHolder(join(this.dir, "locks", n));
      if (pid !== undefined) out.push(pid);
      else await rm(join(this.dir, "locks", n), { force: true });
    }
    return out;
  }

  /** Every entry under points/, each checked on its own: healthy ones oldest first, then the damaged ones by name. */
  async scan(): Promise<PointEntry[]> {
    const names = await readdir(join(this.dir, "points")).catch(() => [] as string[]);
    const packs = new Set((await this.chunks.listPacks()).packs);
    const out: PointEntry[] = [];
    for (const id of names) out.push(await this.scanOne(id, packs));
    const ok = out.filter((e): e is Extract<PointEntry, { status: "ok" }> => e.status === "ok").sort((a, b) => byTime(a.point, b.point));
    const bad = out.filter((e) => e.status === "damaged").sort((a, b) => (a.id < b.id ? -1 : 1));
    return [...ok, ...bad];
  }

  private async scanOne(id: string, packs: ReadonlySet<string>): Promise<PointEntry> {
    const path = join(this.dir, "points", id);
    const st = await stat(path).catch(() => undefined);
    if (st === undefined) return { id, status: "damaged", reason: "vanished while listing" };
    if (!st.isDirectory()) return { id, status: "damaged", reason: "not a point directory (a stray file)" };
    let point: BackupPoint;
    try {
      point = await this.readPoint(id);
    } catch (e: unknown) {
      const files = await readdir(path).catch(() => [] as string[]);
      return { id, status: "damaged", reason: files.length === 0 ? "empty directory (no point.json)" : errorMessage(e) };
    }
    try {
      if (point.id !== id) throw new CorruptError(`point.json names point ${quote(point.id)}`);
      for (const d of point.disks) {
        const map = await this.index(point, d.name);
        const missing = new Map<string, number>();
        for (let k = 0; k < map.count; k++) {
          const loc = this.chunks.locate(map.hexAt(k));
          if (loc !== undefined && !packs.has(loc.pack)) missing.set(loc.pack, (missing.get(loc.pack) ?? 0) + 1);
        }
        const [pack, n] = [...missing][0] ?? [];
        if (pack !== undefined) throw new CorruptError(`disk ${d.name}: pack ${pack} is missing (${n} chunks)`);
      }
    } catch (e: unknown) {
      return { id, status: "damaged", reason: errorMessage(e), point };
    }
    return { id, status: "ok", point };
  }

  /** Healthy committed points, oldest first; only `vm`'s when given. */
  async list(vm?: string): Promise<BackupPoint[]> {
    const out: BackupPoint[] = [];
    for (const e of await this.scan()) if (e.status === "ok" && (vm === undefined || e.point.vm === vm)) out.push(e.point);
    return out;
  }

  /** The newest healthy point of `vm`. */
  async latest(vm: string): Promise<BackupPoint | undefined> {
    return (await this.list(vm)).at(-1);
  }

  /**
   * The newest point of `vm` whose record is readable, healthy or not, with the
   * damage if any: the backup run keeps its base snapshot, and builds on it only
   * when it is healthy.
   */
  async newestRecord(vm: string): Promise<{ point: BackupPoint; damage: string | undefined } | undefined> {
    const withRecord = (await this.scan()).filter((e) => e.point !== undefined && e.point.vm === vm);
    const newest = withRecord.sort((a, b) => byTime(a.point as BackupPoint, b.point as BackupPoint)).at(-1);
    if (newest?.point === undefined) return undefined;
    return { point: newest.point, damage: newest.status === "damaged" ? newest.reason : await this.badChunks(newest.point) };
  }

  /** Why some chunk of `point` cannot be read (no good copy known: found bad, never healed), or undefined. */
  async badChunks(point: BackupPoint): Promise<string | undefined> {
    let n = 0;
    let first = "";
    for (const d of point.disks) {
      const map = await this.index(point, d.name);
      for (let k = 0; k < map.count; k++) {
        if (this.chunks.locate(map.hexAt(k)) !== undefined) continue;
        if (n++ === 0) first = `disk ${d.name} chunk ${map.numberAt(k)} (${map.hexAt(k)})`;
      }
    }
    return n === 0 ? undefined : `${n} chunk(s) with no good copy, first ${first}`;
  }

  /** A healthy point by id, unique id prefix, or "VM@latest"; a damaged one named exactly is a CorruptError with its reason. */
  async get(ref: string): Promise<BackupPoint> {
    const at = /^(.+)@latest$/.exec(ref);
    if (at?.[1] !== undefined) {
      const p = await this.latest(at[1]);
      if (!p) throw new NotFoundError(`no healthy backup point of VM ${quote(at[1])}`);
      return p;
    }
    const entries = await this.scan();
    const exact = entries.find((e) => e.id === ref);
    const hits = exact ? [exact] : entries.filter((e) => e.id.startsWith(ref));
    if (hits.length > 1) throw new InvalidArgumentError(`${quote(ref)} names ${hits.length} points: ${hits.map((e) => e.id).join(", ")}`);
    const hit = hits[0];
    if (hit === undefined) throw new NotFoundError(`no backup point ${quote(ref)}`);
    if (hit.status === "damaged") throw new CorruptError(`backup point ${hit.id} is damaged: ${hit.reason}`);
    return hit.point;
  }

  /** The map of one disk of a committed point (labelled "point P disk D" for error messages). */
  async index(point: BackupPoint, disk: string): Promise<DiskMap> {
    const d = this.disk(point, disk);
    const key = `${point.id}/${disk}`;
    const cached = this.maps.get(key);
    if (cached) return cached;
    const path = join(this.dir, "points", point.id, `${disk}.map`);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (e: unknown) {
      throw new CorruptError(`${path}: ${errorMessage(e)}`);
    }
    const map = decodeDiskMap(bytes, path);
    if (map.size !== d.size) throw new CorruptError(`${path}: ${map.size} bytes, the point says ${d.size}`);
    if (map.chunkSize !== this.chunkSize) throw new CorruptError(`${path}: chunk size ${map.chunkSize}, the repository's is ${this.chunkSize}`);
    map.label = `point ${point.id} disk ${disk}`;
    this.maps.set(key, map);
    return map;
  }

  async openImage(point: BackupPoint, disk: string): Promise<ImageReader> {
    return new ImageReader(this.chunks, await this.index(point, disk));
  }

  disk(point: BackupPoint, name: string): PointDisk {
    const d = point.disks.find((x) => x.name === name);
    if (!d) throw new NotFoundError(`point ${point.id} has no disk ${quote(name)} (disks: ${point.disks.map((x) => x.name).join(", ")})`);
    return d;
  }

  newPointId(vm: string, at = new Date()): string {
    const t = at.toISOString().replace(/[-:]/g, "").replace(/\.(\d+)Z$/, "$1Z");
    return `${vm}-${t}-${randomBytes(2).toString("hex")}`;
  }

  /** Starts a point: its files go under tmp/<id> until commit. */
  async begin(id: string): Promise<PendingPoint> {
    if (!POINT_ID.test(id)) throw new InvalidArgumentError(`invalid point id ${quote(id)}`);
    const tmp = await this.claimTmp(id);
    await mkdir(tmp, { recursive: true });
    await syncDir(join(this.dir, "tmp"));
    let done = false;
    return {
      id,
      image: (base) => new ImageBuilder(this.chunks, base),
      addDisk: async (name, map) => {
        if (!POINT_ID.test(name)) throw new InvalidArgumentError(`invalid disk name ${quote(name)}`);
        await writeFileSynced(join(tmp, `${name}.map`), encodeDiskMap(map));
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
        await this.releaseTmp(id);
      },
      abandon: async () => {
        if (done) return;
        done = true;
        await rm(tmp, { recursive: true, force: true });
        await this.releaseTmp(id);
      },
    };
  }

  /** Removes one entry under points/ (healthy or damaged), by exact id or unique prefix. */
  async deletePoint(ref: string): Promise<string> {
    return this.maintenance("delete", async () => {
      const names = await readdir(join(this.dir, "points")).catch(() => [] as string[]);
      const hits = names.includes(ref) ? [ref] : names.filter((n) => n.startsWith(ref));
      if (hits.length > 1) throw new InvalidArgumentError(`${quote(ref)} names ${hits.length} points: ${hits.join(", ")}`);
      const id = hits[0];
      if (id === undefined) throw new NotFoundError(`no backup point ${quote(ref)}`);
      const holders = await this.pointHolders(id);
      if (holders.length > 0) throw new FailedPreconditionError(`point ${id} is being served by \`backup serve\` (process ${holders.join(", ")}); stop it first, then delete`);
      await this.removeEntry(id);
      return id;
    });
  }

  /** Moves points/<id> out of sight atomically, then deletes it. */
  async removeEntry(id: string): Promise<void> {
    const name = `deleted-${id}-${randomBytes(2).toString("hex")}`;
    const trash = await this.claimTmp(name);
    await rename(join(this.dir, "points", id), trash);
    await syncDir(join(this.dir, "points"));
    await rm(trash, { recursive: true, force: true });
    await this.releaseTmp(name);
    for (const k of [...this.maps.keys()]) if (k.startsWith(`${id}/`)) this.maps.delete(k);
  }

  /** Deletes all but the newest `keep` healthy points of each VM (or of `vm`), then garbage-collects packs. */
  async prune(keep: number, vm?: string): Promise<PruneReport> {
    if (!Number.isInteger(keep) || keep < 1) throw new InvalidArgumentError(`--keep must be at least 1, got ${keep}`);
    return this.maintenance("prune", async () => {
      const byVm = new Map<string, BackupPoint[]>();
      for (const p of await this.list()) byVm.set(p.vm, [...(byVm.get(p.vm) ?? []), p]);
      const removed: string[] = [];
      const served: { id: string; pids: number[] }[] = [];
      for (const [name, points] of byVm) {
        if (vm !== undefined && name !== vm) continue;
        for (const p of points.slice(0, Math.max(0, points.length - keep))) {
          // A served point stays whole, chunks included: liveHashes still sees it.
          const pids = await this.pointHolders(p.id);
          if (pids.length > 0) {
            served.push({ id: p.id, pids });
            continue;
          }
          await this.removeEntry(p.id);
          removed.push(p.id);
        }
      }
      const gc = await collectPacks(this.chunks, await this.liveHashes());
      return { removedPoints: removed, keptPoints: (await this.list()).map((p) => p.id), servedPoints: served, ...gc };
    });
  }

  /**
   * Every hash some point may still need: the maps of every entry whose map
   * can be read, damaged or not (a point damaged by a missing pack keeps its
   * other chunks until it is deleted).
   */
  async liveHashes(): Promise<Set<string>> {
    const live = new Set<string>();
    for (const e of await this.scan()) {
      if (e.point === undefined) continue;
      for (const d of e.point.disks) {
        try {
          (await this.index(e.point, d.name)).uniqueHashes(live);
        } catch {
          // An unreadable map references nothing we can know.
        }
      }
    }
    return live;
  }

  /** Runs `fn` holding the maintenance lock, refusing while a backup runs. */
  async maintenance<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const lock = await this.lock("maintenance");
    try {
      for (const n of await readdir(join(this.dir, "locks"))) {
        if (n.startsWith("vm-") && (await lockHolder(join(this.dir, "locks", n))) !== undefined) throw new FailedPreconditionError(`a backup is running (${n}); ${what} later`);
      }
      return await fn();
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
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (e: unknown) {
      throw new CorruptError(`${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no point.json" : errorMessage(e)}`);
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      throw new CorruptError(`${path} is not JSON (${text.length} bytes; truncated?)`);
    }
    return parsePoint(v, path);
  }
}

function byTime(a: BackupPoint, b: BackupPoint): number {
  return a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : 1;
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
