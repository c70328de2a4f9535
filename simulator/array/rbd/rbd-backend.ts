/**
 * ArrayBackend on Ceph RBD (docs/rbd.md): LUN = RBD image (layering,
 * exclusive-lock, object-map, fast-diff; object size = the LUN's block size),
 * snapshot = RBD user snapshot, clone = RBD clone of a protected snapshot,
 * revert = `rbd snap rollback`, CBT = `rbd diff --from-snap`.
 *
 * Invariants:
 *  - Management operations run one at a time (Mutex) and persist the catalogue
 *    (rbd-catalogue.ts) before they return.
 *  - Group snapshots follow the local store's order: intent record (durable) →
 *    fence every member's IoGate → drain → FLUSH each image through its qemu-nbd
 *    → one RBD user snapshot of the same name per image → commit → unfence. Pacific
 *    cannot diff, clone or open `rbd group snap` members, so same-named user
 *    snapshots are the cut. A crash between intent and commit leaves an
 *    "incomplete" group, whose snapshots the next open removes.
 *  - CBT answers are aligned outward to the image's object size and flagged DATA
 *    (object exists in the target) or ZERO (object gone). Inside objects that
 *    existed at the base, rbd reports exact extents; for a new object it reports
 *    0..highest written offset, so the object is the honest granularity.
 *  - A deleted snapshot cannot be a CBT base (cbtFromDeletedBase false): RBD
 *    keeps no tombstone. A snapshot with clones is hidden from the array but kept
 *    in RBD until its clones are gone.
 *  - Nothing waits on Ceph without a deadline (ceph-stall.ts): every CLI call, NBD
 *    request to qemu-nbd and fence drain ends within `timeoutMs`, sooner (after
 *    PROBE_MS) when the OSD map shows the pool full (NO_SPACE) or an OSD down (EIO
 *    on the data path, UNAVAILABLE for management).
 *  - close() is bounded (about CLOSE_WAIT_MS + timeoutMs-bounded flushes + the
 *    qemu-nbd stop): it waits at most CLOSE_WAIT_MS for a management call in
 *    flight (after that, that call's result is lost as in a crash: recovery and
 *    the catalogue's atomic saves cover it), kills the usage pass's child, then
 *    flushes and stops every qemu-nbd in parallel.
 */
import { join } from "node:path";
import {
  AlreadyExistsError,
  CbtUnavailableError,
  FailedPreconditionError,
  InvalidArgumentError,
  IoError,
  NotFoundError,
  UnavailableError,
  type SanboxError,
} from "../../../src/errors.js";
import { createLogger } from "../../../src/log.js";
import { coalesceFlagged } from "../../../src/extents/index.js";
import type { NbdClientPool } from "../../../src/nbd/client-pool.js";
import type {
  AllocatedExtentsResult,
  ArrayBackend,
  BackendCapabilities,
  CbtTarget,
  ChangedExtentsResult,
  GroupSnapshotInfo,
  LunInfo,
  LunVolume,
  PoolInfo,
  SnapshotInfo,
} from "../backend.js";
import type { ChangedExtent } from "../cbt.js";
import { checkName, newId, newNaa } from "../ids.js";
import { IoGate, Mutex } from "../io-gate.js";
import type { VolumeTarget } from "../volume.js";
import { boundCall, CephHealth } from "./ceph-stall.js";
import { QemuNbdImage } from "./qemu-nbd-image.js";
import { RbdCatalogue, type RbdGroupRecord, type RbdLunRecord, type RbdSnapRecord } from "./rbd-catalogue.js";
import { monitorAddress, RbdCli } from "./rbd-cli.js";
import { RbdUsage } from "./rbd-usage.js";
import { RbdVolume } from "./rbd-volume.js";

export const RBD_FEATURES = "layering,exclusive-lock,object-map,fast-diff";
export const RBD_DEFAULT_OBJECT_SIZE = 64 * 1024;
const MIN_OBJECT_SIZE = 4096;
const MAX_OBJECT_SIZE = 32 * 1024 * 1024;
/** A call still running after this long is checked against the OSD map (ceph-stall.ts). */
const PROBE_MS = 2_000;
/** How long close() waits for a management call in flight. */
const CLOSE_WAIT_MS = 3_000;

export interface RbdBackendOptions {
  dataDir: string;
  conf: string;
  pool: string;
  /** Object size of new images (a power of two, 4 KiB–32 MiB). Default 64 KiB. */
  objectSize?: number;
  /** Deadline for reaching Ceph at start, for each call and each I/O request. Default 20 s. */
  timeoutMs?: number;
}

export interface DiffEntry {
  offset: number;
  length: number;
  exists: boolean;
}

function parseDiff(v: unknown): DiffEntry[] {
  if (!Array.isArray(v)) return [];
  const out: DiffEntry[] = [];
  for (const e of v as unknown[]) {
    if (typeof e !== "object" || e === null) continue;
    const r = e as { offset?: unknown; length?: unknown; exists?: unknown };
    if (typeof r.offset !== "number" || typeof r.length !== "number") continue;
    out.push({ offset: r.offset, length: r.length, exists: r.exists === true || r.exists === "true" });
  }
  return out;
}

/** Aligns extents outward to `bs`, clipped to `size`; DATA wins where a DATA and a ZERO extent share a block. */
export function alignExtents(entries: readonly DiffEntry[], bs: number, size: number): ChangedExtent[] {
  const blocks = new Map<number, "DATA" | "ZERO">();
  for (const e of entries) {
    const lo = Math.floor(e.offset / bs);
    const hi = Math.ceil(Math.min(size, e.offset + e.length) / bs);
    for (let b = lo; b < hi; b++) if (e.exists || !blocks.has(b)) blocks.set(b, e.exists ? "DATA" : blocks.get(b) === "DATA" ? "DATA" : "ZERO");
  }
  const sorted = [...blocks.entries()].sort((a, b) => a[0] - b[0]);
  return coalesceFlagged(sorted.map(([b, flag]) => ({ offset: b * bs, length: Math.min(bs, size - b * bs), flag })));
}

export class RbdBackend implements ArrayBackend {
  readonly capabilities: BackendCapabilities;
  private readonly mgmt = new Mutex();
  private readonly gates = new Map<string, IoGate>();
  /** Live LUN id or snapshot id → its qemu-nbd (started on first open). */
  private readonly images = new Map<string, Promise<QemuNbdImage>>();
  private closed = false;
  /** allocatedBytes and pool usage, measured in the background (rbd-usage.ts). */
  private readonly usage: RbdUsage;
  private readonly health: CephHealth;
  private readonly timeoutMs: number;

  private constructor(
    private readonly cli: RbdCli,
    private readonly cat: RbdCatalogue,
    private readonly opts: RbdBackendOptions,
    private readonly objectSize: number,
  ) {
    this.capabilities = {
      kind: "rbd",
      blockSize: objectSize,
      cbtGranularityBytes: objectSize,
      cbtFromDeletedBase: false,
      cbtLiveTarget: true,
      maxSnapshotsPerLun: 0,
    };
    this.usage = new RbdUsage(cli, createLogger("array/rbd"));
    this.timeoutMs = opts.timeoutMs ?? 20_000;
    this.health = new CephHealth(cli);
    cli.setBound((what, work, ms, onEnd) => this.bound(what, work, (m) => new UnavailableError(m), ms, onEnd));
  }

  /** `work` under the deadline; `down` is the error for an OSD that is down. */
  private bound<T>(what: string, work: Promise<T>, down: (m: string) => SanboxError, deadlineMs = this.timeoutMs, onEnd?: () => void): Promise<T> {
    return boundCall(what, work, { health: this.health, probeMs: Math.min(PROBE_MS, deadlineMs), deadlineMs, down, ...(onEnd ? { onEnd } : {}) });
  }

  /** The data path's deadline: an OSD down is EIO to the NBD client. */
  private ioBound<T>(what: string, work: Promise<T>): Promise<T> {
    return this.bound(what, work, (m) => new IoError(m));
  }

  private mgmtBound<T>(what: string, work: Promise<T>): Promise<T> {
    return this.bound(what, work, (m) => new UnavailableError(m));
  }

  static async open(opts: RbdBackendOptions): Promise<RbdBackend> {
    const objectSize = opts.objectSize ?? RBD_DEFAULT_OBJECT_SIZE;
    if (!Number.isInteger(Math.log2(objectSize)) || objectSize < MIN_OBJECT_SIZE || objectSize > MAX_OBJECT_SIZE) {
      throw new InvalidArgumentError(`object size must be a power of two from 4 KiB to 32 MiB, got ${objectSize}`);
    }
    const timeoutMs = opts.timeoutMs ?? 20_000;
    const cli = new RbdCli({ conf: opts.conf, pool: opts.pool, timeoutMs });
    try {
      // Reaches the monitor and the OSD; a missing pool is NoSpaceError (rbd-cli.ts).
      await cli.json("rbd", ["ls", opts.pool], `cannot use pool "${opts.pool}"`);
    } catch (e) {
      if (e instanceof UnavailableError) throw new UnavailableError(`cannot reach Ceph within ${timeoutMs} ms: monitor ${monitorAddress(opts.conf)} (conf ${opts.conf})`);
      throw e;
    }
    const cat = await RbdCatalogue.open(opts.dataDir, opts.pool);
    const b = new RbdBackend(cli, cat, opts, objectSize);
    await b.recover();
    for (const l of cat.data.luns) if (l.hidden !== true) b.usage.mark(l.id, { image: l.image });
    for (const s of cat.data.snaps) if (s.state === "ready") b.usage.mark(s.id, { image: s.image, snap: s.snap });
    return b;
  }

  /** Removes the member snapshots of group cuts that never committed. */
  private async recover(): Promise<void> {
    const incomplete = this.cat.data.groups.filter((g) => g.state === "incomplete");
    if (incomplete.length === 0) return;
    for (const g of incomplete) {
      for (const lunId of g.lunIds) {
        const lun = this.cat.data.luns.find((l) => l.id === lunId);
        if (lun) await this.cli.run("rbd", ["snap", "rm", this.cli.spec(lun.image, this.groupSnapName(g))], "drop incomplete group cut").catch(() => undefined);
      }
      this.cat.data.snaps = this.cat.data.snaps.filter((s) => s.groupId !== g.id);
    }
    this.cat.data.groups = this.cat.data.groups.filter((g) => g.state !== "incomplete");
    await this.cat.save();
  }

  private groupSnapName(g: RbdGroupRecord): string {
    return `sanbox-${g.id}`;
  }

  // ------------------------------------------------------------ plumbing

  private manage<T>(fn: () => Promise<T>): Promise<T> {
    return this.mgmt.run(async () => {
      if (this.closed) throw new FailedPreconditionError("the array backend is closed");
      const out = await fn();
      await this.cat.save();
      return out;
    });
  }

  private gate(lunId: string): IoGate {
    let g = this.gates.get(lunId);
    if (!g) this.gates.set(lunId, (g = new IoGate()));
    return g;
  }

  private lunRec(ref: string): RbdLunRecord {
    const live = this.cat.data.luns.filter((x) => x.hidden !== true);
    const l = live.find((x) => x.id === ref) ?? live.find((x) => x.name === ref);
    if (!l) throw new NotFoundError(`LUN "${ref}" not found`);
    return l;
  }

  private snapRec(id: string): RbdSnapRecord {
    const s = this.cat.data.snaps.find((x) => x.id === id && x.state === "ready");
    if (!s) throw new NotFoundError(`snapshot "${id}" not found`);
    return s;
  }

  private lunInfo(l: RbdLunRecord): LunInfo {
    return { id: l.id, name: l.name, naa: l.naa, size: l.size, blockSize: l.blockSize, allocatedBytes: this.usage.allocatedBytes(l.id), createdAt: l.createdAt, origin: l.origin };
  }

  private snapInfo(s: RbdSnapRecord): SnapshotInfo {
    return { id: s.id, name: s.name, lunId: s.lunId, size: s.size, blockSize: s.blockSize, createdAt: s.createdAt, groupId: s.groupId, allocatedBytes: this.usage.allocatedBytes(s.id) };
  }

  private groupInfo(g: RbdGroupRecord): GroupSnapshotInfo {
    return { id: g.id, name: g.name, createdAt: g.createdAt, members: g.snapshotIds.map((id) => this.snapInfo(this.snapRec(id))) };
  }

  private image(key: string, spec: string, readOnly: boolean): Promise<QemuNbdImage> {
    let p = this.images.get(key);
    if (!p) {
      p = QemuNbdImage.start({ socket: join(this.opts.dataDir, `qnbd-${key}.sock`), conf: this.opts.conf, spec, readOnly });
      this.images.set(key, p);
      p.catch(() => this.images.delete(key));
    }
    return p;
  }

  private async stopImage(key: string): Promise<void> {
    const p = this.images.get(key);
    if (!p) return;
    this.images.delete(key);
    const img = await p.catch(() => undefined);
    await img?.stop();
  }

  private async liveClient(lun: RbdLunRecord): Promise<NbdClientPool> {
    return (await this.image(lun.id, this.cli.spec(lun.image), false)).client;
  }

  /** FLUSH through the LUN's qemu-nbd under `bound`. */
  private async flushLive(lun: RbdLunRecord, bound: <T>(what: string, work: Promise<T>) => Promise<T>): Promise<void> {
    const what = `flush LUN "${lun.name}"`;
    const c = await bound(what, this.liveClient(lun));
    await bound(what, c.flush());
  }

  /** Fence → drain → flush each LUN's image; returns the unfence. The drain and the flushes are bounded: a write Ceph paused never drains. */
  private async fence(luns: readonly RbdLunRecord[]): Promise<() => void> {
    const gates = luns.map((l) => this.gate(l.id));
    const fenced: IoGate[] = [];
    try {
      for (const [i, g] of gates.entries()) {
        const drained = g.fence();
        fenced.push(g);
        await this.mgmtBound(`drain the writes to LUN "${luns[i]?.name ?? ""}"`, drained);
      }
      for (const l of luns) if (this.images.has(l.id)) await this.flushLive(l, (w, p) => this.mgmtBound(w, p));
    } catch (e) {
      for (const g of fenced) g.unfence();
      throw e;
    }
    return () => {
      for (const g of fenced) g.unfence();
    };
  }

  // ------------------------------------------------------------ LUNs

  async createLun(req: { name: string; size: number; blockSize?: number }): Promise<LunInfo> {
    checkName("LUN", req.name);
    const bs = req.blockSize ?? this.objectSize;
    if (!Number.isInteger(Math.log2(bs)) || bs < MIN_OBJECT_SIZE || bs > MAX_OBJECT_SIZE) throw new InvalidArgumentError(`block size must be a power of two from 4 KiB to 32 MiB, got ${bs}`);
    if (!Number.isSafeInteger(req.size) || req.size <= 0 || req.size % bs !== 0) throw new InvalidArgumentError(`size must be a positive multiple of ${bs}, got ${req.size}`);
    return this.manage(async () => {
      const found = this.cat.data.luns.find((l) => l.name === req.name && l.hidden !== true);
      if (found) {
        if (found.size === req.size) return this.lunInfo(found);
        throw new AlreadyExistsError(`a LUN named "${req.name}" already exists with another size`);
      }
      const id = newId("lun");
      const rec: RbdLunRecord = { id, name: req.name, naa: newNaa(), image: `sanbox-${id}`, size: req.size, blockSize: bs, createdAt: new Date().toISOString(), origin: null };
      await this.cli.run("rbd", ["create", "--size", `${req.size}B`, "--object-size", `${bs}B`, "--image-feature", RBD_FEATURES, this.cli.spec(rec.image)], `create LUN "${req.name}"`);
      this.cat.data.luns.push(rec);
      this.usage.mark(rec.id, { image: rec.image });
      return this.lunInfo(rec);
    });
  }

  listLuns(): LunInfo[] {
    return this.cat.data.luns.filter((l) => l.hidden !== true).sort((a, b) => a.name.localeCompare(b.name)).map((l) => this.lunInfo(l));
  }

  getLun(ref: string): LunInfo {
    return this.lunInfo(this.lunRec(ref));
  }

  async resizeLun(ref: string, newSize: number): Promise<LunInfo> {
    const lun0 = this.lunRec(ref);
    if (!Number.isSafeInteger(newSize) || newSize <= 0 || newSize % lun0.blockSize !== 0) throw new InvalidArgumentError(`size must be a positive multiple of ${lun0.blockSize}, got ${newSize}`);
    return this.manage(async () => {
      const lun = this.lunRec(lun0.id);
      const unfence = await this.fence([lun]);
      try {
        await this.stopImage(lun.id);
        await this.cli.run("rbd", ["resize", "--size", `${newSize}B`, "--allow-shrink", this.cli.spec(lun.image)], `resize LUN "${lun.name}"`);
        lun.size = newSize;
        this.usage.mark(lun.id, { image: lun.image });
        return this.lunInfo(lun);
      } finally {
        unfence();
      }
    });
  }

  async deleteLun(ref: string): Promise<void> {
    const lun0 = this.lunRec(ref);
    await this.manage(async () => {
      const lun = this.lunRec(lun0.id);
      const snaps = this.cat.data.snaps.filter((s) => s.lunId === lun.id && s.state === "ready");
      if (snaps.length > 0) throw new FailedPreconditionError(`LUN "${lun.name}" still has ${snaps.length} snapshot(s) (${snaps.map((s) => s.name).join(", ")}); delete them first`);
      await this.stopImage(lun.id);
      this.gates.delete(lun.id);
      this.usage.forget(lun.id);
      // Deleted snapshots of this LUN that clones still use keep its image in RBD: hide it until they go.
      if (this.cat.data.snaps.some((s) => s.lunId === lun.id)) lun.hidden = true;
      else {
        await this.removeGone(["rm", "--no-progress", this.cli.spec(lun.image)], `delete LUN "${lun.name}"`);
        this.cat.data.luns = this.cat.data.luns.filter((l) => l.id !== lun.id);
      }
      await this.reapParents();
    });
  }

  /**
   * Removes hidden (deleted) snapshots whose last clone is gone, then hidden LUNs
   * left with no snapshot. Repeats while it removes something: a hidden LUN that
   * was itself a clone frees its parent's snapshot in turn.
   */
  private async reapParents(): Promise<void> {
    for (let removed = true; removed; ) {
      removed = false;
      for (const s of this.cat.data.snaps.filter((x) => x.state === "deleted")) {
        if (this.cat.data.luns.some((l) => l.origin === s.id)) continue;
        await this.dropRbdSnap(s);
        this.cat.data.snaps = this.cat.data.snaps.filter((x) => x.id !== s.id);
        removed = true;
      }
      for (const l of this.cat.data.luns.filter((x) => x.hidden === true)) {
        if (this.cat.data.snaps.some((s) => s.lunId === l.id)) continue;
        await this.removeGone(["rm", "--no-progress", this.cli.spec(l.image)], `delete the image of deleted LUN "${l.name}"`);
        this.cat.data.luns = this.cat.data.luns.filter((x) => x.id !== l.id);
        removed = true;
      }
    }
  }

  private async dropRbdSnap(s: RbdSnapRecord): Promise<void> {
    const spec = this.cli.spec(s.image, s.snap);
    if (s.protected) await this.cli.run("rbd", ["snap", "unprotect", spec], `unprotect snapshot "${s.name}"`);
    await this.removeGone(["snap", "rm", "--no-progress", spec], `delete snapshot "${s.name}"`);
  }

  /**
   * An `rbd rm`/`snap rm` of something the catalogue still lists. NOT_FOUND means an
   * earlier attempt did it after all: a call the deadline ended is not undone, and
   * librbd hands a snapshot removal to the image's lock owner (our qemu-nbd), which
   * carries it out once Ceph takes writes again (docs/rbd.md "Faults").
   */
  private async removeGone(args: string[], what: string): Promise<void> {
    try {
      await this.cli.run("rbd", args, what);
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      createLogger("array/rbd").info(`${what}: already gone in RBD (an earlier attempt completed late)`);
    }
  }

  // ------------------------------------------------------------ snapshots

  private findSnapByName(name: string): RbdSnapRecord | undefined {
    return this.cat.data.snaps.find((s) => s.name === name && s.state === "ready");
  }

  async createSnapshot(req: { lun: string; name: string }): Promise<SnapshotInfo> {
    checkName("snapshot", req.name);
    const lun0 = this.lunRec(req.lun);
    return this.manage(async () => {
      const lun = this.lunRec(lun0.id);
      const found = this.findSnapByName(req.name);
      if (found) {
        if (found.lunId === lun.id && found.groupId === null) return this.snapInfo(found);
        throw new AlreadyExistsError(`a snapshot named "${req.name}" already exists`);
      }
      const id = newId("snap");
      const unfence = await this.fence([lun]);
      try {
        await this.cli.run("rbd", ["snap", "create", "--no-progress", this.cli.spec(lun.image, `sanbox-${id}`)], `snapshot LUN "${lun.name}"`);
      } finally {
        unfence();
      }
      const rec: RbdSnapRecord = { id, name: req.name, lunId: lun.id, image: lun.image, snap: `sanbox-${id}`, size: lun.size, blockSize: lun.blockSize, createdAt: new Date().toISOString(), groupId: null, protected: false, state: "ready" };
      this.cat.data.snaps.push(rec);
      this.usage.mark(rec.id, { image: rec.image, snap: rec.snap });
      return this.snapInfo(rec);
    });
  }

  async createGroupSnapshot(req: { name: string; luns: string[] }): Promise<GroupSnapshotInfo> {
    checkName("group snapshot", req.name);
    if (req.luns.length === 0) throw new InvalidArgumentError("a group snapshot needs at least one LUN");
    const ids = req.luns.map((r) => this.lunRec(r).id);
    if (new Set(ids).size !== ids.length) throw new InvalidArgumentError("a group snapshot lists the same LUN twice");
    return this.mgmt.run(async () => {
      if (this.closed) throw new FailedPreconditionError("the array backend is closed");
      const found = this.cat.data.groups.find((g) => g.name === req.name);
      if (found) {
        if (found.state === "complete" && found.lunIds.length === ids.length && ids.every((id) => found.lunIds.includes(id))) return this.groupInfo(found);
        throw new AlreadyExistsError(`a group snapshot named "${req.name}" already exists for other LUNs`);
      }
      const luns = ids.map((id) => this.lunRec(id));
      for (const l of luns) if (this.findSnapByName(`${req.name}@${l.name}`)) throw new AlreadyExistsError(`snapshot name "${req.name}@${l.name}" is taken`);
      // 1. intent, durable before any image is touched.
      const g: RbdGroupRecord = { id: newId("grp"), name: req.name, createdAt: new Date().toISOString(), lunIds: ids, snapshotIds: [], state: "incomplete" };
      this.cat.data.groups.push(g);
      await this.cat.save();
      const snap = this.groupSnapName(g);
      const cut: string[] = [];
      try {
        // 2-4. fence all, drain, flush; one same-named user snapshot per image.
        const unfence = await this.fence(luns);
        try {
          for (const l of luns) {
            await this.cli.run("rbd", ["snap", "create", "--no-progress", this.cli.spec(l.image, snap)], `group snapshot "${req.name}" of LUN "${l.name}"`);
            cut.push(l.image);
          }
        } finally {
          unfence();
        }
      } catch (e) {
        for (const image of cut) await this.cli.run("rbd", ["snap", "rm", "--no-progress", this.cli.spec(image, snap)], "undo group cut").catch(() => undefined);
        this.cat.data.groups = this.cat.data.groups.filter((x) => x.id !== g.id);
        await this.cat.save();
        throw e;
      }
      // 5. commit.
      const now = new Date().toISOString();
      for (const l of luns) {
        const rec: RbdSnapRecord = { id: newId("snap"), name: `${req.name}@${l.name}`, lunId: l.id, image: l.image, snap, size: l.size, blockSize: l.blockSize, createdAt: now, groupId: g.id, protected: false, state: "ready" };
        this.cat.data.snaps.push(rec);
        this.usage.mark(rec.id, { image: rec.image, snap: rec.snap });
        g.snapshotIds.push(rec.id);
      }
      g.state = "complete";
      await this.cat.save();
      return this.groupInfo(g);
    });
  }

  listSnapshots(filter: { lun?: string } = {}): SnapshotInfo[] {
    const lunId = filter.lun === undefined ? undefined : this.lunRec(filter.lun).id;
    return this.cat.data.snaps
      .filter((s) => s.state === "ready" && (lunId === undefined || s.lunId === lunId))
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt))
      .map((s) => this.snapInfo(s));
  }

  getSnapshot(id: string): SnapshotInfo {
    return this.snapInfo(this.snapRec(id));
  }

  async deleteSnapshot(id: string): Promise<void> {
    this.snapRec(id);
    await this.manage(async () => {
      const s = this.snapRec(id);
      if (s.groupId !== null && this.cat.data.groups.some((g) => g.id === s.groupId)) throw new FailedPreconditionError(`snapshot ${s.id} belongs to group snapshot ${s.groupId}; delete the group`);
      await this.retire(s);
    });
  }

  /** Drops a snapshot from the array; keeps it in RBD (hidden) while clones depend on it. */
  private async retire(s: RbdSnapRecord): Promise<void> {
    await this.stopImage(s.id);
    this.usage.forget(s.id);
    if (this.cat.data.luns.some((l) => l.origin === s.id)) {
      s.state = "deleted";
      return;
    }
    await this.dropRbdSnap(s);
    this.cat.data.snaps = this.cat.data.snaps.filter((x) => x.id !== s.id);
  }

  getGroupSnapshot(id: string): GroupSnapshotInfo {
    const g = this.cat.data.groups.find((x) => x.id === id && x.state === "complete");
    if (!g) throw new NotFoundError(`group snapshot "${id}" not found`);
    return this.groupInfo(g);
  }

  listGroupSnapshots(): GroupSnapshotInfo[] {
    return this.cat.data.groups.filter((g) => g.state === "complete").map((g) => this.groupInfo(g));
  }

  async deleteGroupSnapshot(id: string): Promise<void> {
    this.getGroupSnapshot(id);
    await this.manage(async () => {
      const g = this.cat.data.groups.find((x) => x.id === id);
      if (!g) throw new NotFoundError(`group snapshot "${id}" not found`);
      for (const sid of g.snapshotIds) {
        const s = this.cat.data.snaps.find((x) => x.id === sid && x.state === "ready");
        if (s) await this.retire(s);
      }
      this.cat.data.groups = this.cat.data.groups.filter((x) => x.id !== id);
    });
  }

  // ------------------------------------------------------------ revert, clone

  async revertLun(ref: string, snapshotId: string): Promise<LunInfo> {
    const lun0 = this.lunRec(ref);
    this.snapRec(snapshotId);
    return this.manage(async () => {
      const lun = this.lunRec(lun0.id);
      const s = this.snapRec(snapshotId);
      if (s.lunId !== lun.id) throw new InvalidArgumentError(`snapshot ${s.id} is not a snapshot of LUN ${lun.name}`);
      const unfence = await this.fence([lun]);
      try {
        // Rollback needs the image's exclusive lock: qemu-nbd holds it while open.
        await this.stopImage(lun.id);
        if (s.size !== lun.size) await this.cli.run("rbd", ["resize", "--size", `${s.size}B`, "--allow-shrink", "--no-progress", this.cli.spec(lun.image)], `resize LUN "${lun.name}" for revert`);
        await this.cli.run("rbd", ["snap", "rollback", "--no-progress", this.cli.spec(lun.image, s.snap)], `revert LUN "${lun.name}"`);
        lun.size = s.size;
        this.usage.mark(lun.id, { image: lun.image });
        return this.lunInfo(lun);
      } finally {
        unfence();
      }
    });
  }

  async cloneSnapshot(req: { snapshot: string; name: string }): Promise<LunInfo> {
    checkName("LUN", req.name);
    this.snapRec(req.snapshot);
    return this.manage(async () => {
      const s = this.snapRec(req.snapshot);
      const found = this.cat.data.luns.find((l) => l.name === req.name && l.hidden !== true);
      if (found) {
        if (found.origin === s.id) return this.lunInfo(found);
        throw new AlreadyExistsError(`a LUN named "${req.name}" already exists`);
      }
      if (!s.protected) {
        await this.cli.run("rbd", ["snap", "protect", this.cli.spec(s.image, s.snap)], `protect snapshot "${s.name}" for a clone`);
        s.protected = true;
      }
      const id = newId("lun");
      const rec: RbdLunRecord = { id, name: req.name, naa: newNaa(), image: `sanbox-${id}`, size: s.size, blockSize: s.blockSize, createdAt: new Date().toISOString(), origin: s.id };
      await this.cli.run("rbd", ["clone", "--image-feature", RBD_FEATURES, this.cli.spec(s.image, s.snap), this.cli.spec(rec.image)], `clone snapshot "${s.name}"`);
      this.cat.data.luns.push(rec);
      this.usage.mark(rec.id, { image: rec.image });
      return this.lunInfo(rec);
    });
  }

  // ------------------------------------------------------------ CBT

  private target(t: CbtTarget): { image: string; snap: string | undefined; size: number; blockSize: number; lunId: string; live: RbdLunRecord | undefined } {
    if ("snapshot" in t) {
      const s = this.snapRec(t.snapshot);
      return { image: s.image, snap: s.snap, size: s.size, blockSize: s.blockSize, lunId: s.lunId, live: undefined };
    }
    const l = this.lunRec(t.lun);
    return { image: l.image, snap: undefined, size: l.size, blockSize: l.blockSize, lunId: l.id, live: l };
  }

  async changedExtents(baseSnapshotId: string, target: CbtTarget): Promise<ChangedExtentsResult> {
    const base = this.cat.data.snaps.find((s) => s.id === baseSnapshotId);
    if (!base) throw new NotFoundError(`base snapshot "${baseSnapshotId}" not found`);
    if (base.state !== "ready") throw new CbtUnavailableError(`base snapshot ${base.id} was deleted; RBD keeps no trace of it: a full backup is needed`);
    const t = this.target(target);
    if (base.lunId !== t.lunId) throw new CbtUnavailableError(`base snapshot ${base.id} is not in the history of the target; a full backup is needed`);
    if ("snapshot" in target) {
      const order = (id: string): number => this.cat.data.snaps.findIndex((s) => s.id === id);
      if (order(base.id) > order(target.snapshot)) throw new InvalidArgumentError(`base snapshot ${base.id} is newer than target snapshot ${target.snapshot}`);
    }
    if (base.blockSize !== t.blockSize) throw new CbtUnavailableError(`base snapshot ${base.id} has a different block size; a full backup is needed`);
    // The live image's writes may sit in qemu's and librbd's caches: make them visible to rbd diff.
    if (t.live && this.images.has(t.live.id)) await this.flushLive(t.live, (w, p) => this.mgmtBound(w, p));
    const v = await this.cli.json("rbd", ["diff", "--from-snap", base.snap, this.cli.spec(t.image, t.snap)], "changed blocks");
    return { blockSize: t.blockSize, size: t.size, extents: alignExtents(parseDiff(v), t.blockSize, t.size) };
  }

  async allocatedExtents(target: CbtTarget): Promise<AllocatedExtentsResult> {
    const t = this.target(target);
    if (t.live && this.images.has(t.live.id)) await this.flushLive(t.live, (w, p) => this.mgmtBound(w, p));
    const v = await this.cli.json("rbd", ["diff", this.cli.spec(t.image, t.snap)], "allocated blocks");
    const ext = alignExtents(parseDiff(v).filter((e) => e.exists), t.blockSize, t.size);
    return { blockSize: t.blockSize, size: t.size, extents: ext.map((e) => ({ offset: e.offset, length: e.length })) };
  }

  // ------------------------------------------------------------ I/O

  openVolume(target: VolumeTarget): LunVolume {
    if ("lun" in target) {
      const lun = this.lunRec(target.lun);
      const id = lun.id;
      return new RbdVolume(id, false, lun.blockSize, {
        client: () => this.ioBound(`open LUN ${id}`, this.liveClient(this.lunRec(id))),
        gate: () => this.gate(id),
        size: () => this.lunRec(id).size,
        written: () => this.usage.mark(id, { image: this.lunRec(id).image }),
        bound: (what, work) => this.ioBound(what, work),
      });
    }
    const s = this.snapRec(target.snapshot);
    const id = s.id;
    return new RbdVolume(id, true, s.blockSize, {
      client: async () => {
        const r = this.snapRec(id);
        return (await this.ioBound(`open snapshot ${id}`, this.image(id, this.cli.spec(r.image, r.snap), true))).client;
      },
      gate: () => this.gate(s.lunId),
      size: () => this.snapRec(id).size,
      bound: (what, work) => this.ioBound(what, work),
    });
  }

  poolInfo(): PoolInfo {
    return { capacityBytes: null, usedBytes: this.usage.usedBytes(), freeBytes: null };
  }

  /** Every open LUN image at once (each bounded): the slowest image sets the time, not the sum. */
  async flush(): Promise<void> {
    const open = this.cat.data.luns.filter((l) => this.images.has(l.id));
    const r = await Promise.allSettled(open.map((l) => this.flushLive(l, (w, p) => this.ioBound(w, p))));
    const failed = r.find((x): x is PromiseRejectedResult => x.status === "rejected");
    if (failed) throw failed.reason;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const tStart = Date.now();
    // New management calls fail from here on (manage() checks `closed`); one in flight gets CLOSE_WAIT_MS.
    let t: NodeJS.Timeout | undefined;
    const idle = this.mgmt.run(() => Promise.resolve());
    const waited = await Promise.race([idle.then(() => true), new Promise<boolean>((r) => (t = setTimeout(() => r(false), CLOSE_WAIT_MS)))]);
    clearTimeout(t);
    const log = createLogger("array/rbd");
    const t0 = Date.now();
    if (!waited) log.warn(`a management call was still running ${CLOSE_WAIT_MS} ms into the shutdown: closing without it`);
    await this.usage.close();
    const t1 = Date.now();
    try {
      await this.flush();
    } finally {
      const t2 = Date.now();
      const n = this.images.size;
      await Promise.all([...this.images.keys()].map((key) => this.stopImage(key)));
      await this.cat.save();
      log.debug(`closed: management ${t0 - tStart} ms, usage pass ${t1 - t0} ms, flush ${t2 - t1} ms, ${n} qemu-nbd stopped in ${Date.now() - t2} ms`);
    }
  }
}
