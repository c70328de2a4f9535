/**
 * ArrayService over the block store: translates contract messages to ArrayStore
 * calls and back, and owns what the store does not: hosts, mappings, NBD export
 * records (control-state.ts), paging, and the CBT stream framing.
 *
 * Rules kept here (docs/contract.md is the vendor-facing statement of them):
 *  - Creates are idempotent on name (LUN, host, snapshot, clone) or on their
 *    natural key (map: lun+host; export: target+host).
 *  - Deletes of unknown ids succeed (CSI); Get/Resize/Revert of unknown ids are NOT_FOUND.
 *  - A mapped or exported LUN, an exported snapshot, and a host with mappings or
 *    exports cannot be deleted (FAILED_PRECONDITION). A group member snapshot is
 *    deleted only with its group (FAILED_PRECONDITION).
 *  - One snapshot name space: CreateSnapshot's name names one plain snapshot or
 *    one group snapshot in the whole array, never both. Checked here, once, for
 *    every backend; snapshot creates run one at a time (`snapCreates`) so the
 *    check and the cut cannot interleave with another create of the same name.
 *  - CBT streams: extents ascending and non-overlapping across messages, at most
 *    `max_results` per message, the first one ending after `starting_offset`.
 *
 * Control-plane changes run one at a time (a promise chain) and are persisted
 * before the call returns.
 */
import type { IoCounters } from "../exports/io-counters.js";
import { randomBytes } from "node:crypto";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  OutOfRangeError,
  SanboxError,
  quote,
} from "../../../src/errors.js";
import type { FlaggedExtent } from "../../../src/extents/index.js";
import type { SessionInfo } from "../../../src/nbd/backend.js";
import type { ArrayServiceImpl } from "../../../src/rpc/array-service-def.js";
import { CONTRACT_VERSION, v1 } from "../../../src/rpc/proto.js";
import type { ArrayBackend, LunInfo, SnapshotInfo } from "../backend.js";
import { checkName } from "../ids.js";
import { Mutex } from "../io-gate.js";
import type { Access } from "../exports/array-export-provider.js";
import { lunExportName, snapshotExportName } from "../exports/export-names.js";
import type { ControlState, ExportRecord, HostRecord } from "./control-state.js";
import { page } from "./paging.js";

export const VENDOR = "sanbox";
export const MODEL = "sanbox-sim";
export const DEFAULT_MAX_RESULTS = 1024;
export const MAX_MAX_RESULTS = 65536;
export const MIN_PSK_BYTES = 16;

export interface ArrayServiceDeps {
  store: ArrayBackend;
  control: ControlState;
  /** The live PSK table the NBD server checks identities against (mutated here). */
  psk: Map<string, Buffer>;
  /** An NBD URI for an export name as `host` would reach it (null = local). */
  nbdUri: (exportName: string, host: HostRecord | null) => string;
  /** NBD I/O counters shared with the export provider (GetPoolStats). */
  counters?: IoCounters;
}

function nonEmpty(field: string, v: string): string {
  if (v === "") throw new InvalidArgumentError(`${field} is required`);
  return v;
}

function isNotFound(e: unknown): boolean {
  return e instanceof SanboxError && e.code === "NOT_FOUND";
}

function newControlId(prefix: "host" | "exp"): string {
  return `${prefix}-${randomBytes(8).toString("hex")}`;
}

export class SanboxArrayService implements ArrayServiceImpl {
  private readonly store: ArrayBackend;
  private readonly control: ControlState;
  private chain: Promise<unknown> = Promise.resolve();
  /** Snapshot creates, one at a time: the name-space check and the backend's cut are one step. */
  private readonly snapCreates = new Mutex();

  constructor(private readonly deps: ArrayServiceDeps) {
    this.store = deps.store;
    this.control = deps.control;
    for (const h of this.control.data.hosts) deps.psk.set(h.pskIdentity, Buffer.from(h.pskKey, "hex"));
  }

  /** Serialises control-plane mutations and persists them before returning. */
  private mutate<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.chain.then(async () => {
      const out = await fn();
      await this.control.save();
      return out;
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  // ------------------------------------------------------------ masking

  /** What an NBD session may see (see exports/array-export-provider.ts). */
  access(session: SessionInfo): Access {
    if (session.tlsIdentity === undefined) return { all: true };
    const host = this.control.data.hosts.find((h) => h.pskIdentity === session.tlsIdentity);
    const lunIds = new Set<string>();
    const snapshotIds = new Set<string>();
    if (host) {
      for (const m of this.control.data.mappings) if (m.hostId === host.id) lunIds.add(m.lunId);
      for (const e of this.control.data.exports) {
        if (e.hostId !== host.id) continue;
        if (e.kind === "lun") lunIds.add(e.lunId);
        else if (e.snapshotId !== null) snapshotIds.add(e.snapshotId);
      }
    }
    return { all: false, lunIds, snapshotIds };
  }

  // ------------------------------------------------------------ views

  private lunView(l: LunInfo): v1.ILun {
    return {
      lunId: l.id,
      name: l.name,
      sizeBytes: l.size,
      naa: l.naa,
      allocatedBytes: l.allocatedBytes,
      blockSizeBytes: l.blockSize,
      creationTime: l.createdAt,
      sourceSnapshotId: l.origin ?? "",
      mappedHostIds: this.control.data.mappings.filter((m) => m.lunId === l.id).map((m) => m.hostId),
    };
  }

  private snapView(s: SnapshotInfo): v1.ISnapshot {
    let lunName = "";
    try {
      lunName = this.store.getLun(s.lunId).name;
    } catch {
      lunName = "";
    }
    return {
      snapshotId: s.id,
      name: s.name,
      lunId: s.lunId,
      lunName,
      sizeBytes: s.size,
      creationTime: s.createdAt,
      readyToUse: true,
      groupSnapshotId: s.groupId ?? "",
      allocatedBytes: s.allocatedBytes,
    };
  }

  private hostView(h: HostRecord): v1.IHost {
    return {
      hostId: h.id,
      name: h.name,
      pskIdentity: h.pskIdentity,
      mappedLunIds: this.control.data.mappings.filter((m) => m.hostId === h.id).map((m) => m.lunId),
    };
  }

  private exportView(e: ExportRecord): v1.IExport {
    const lunName = this.store.getLun(e.lunId).name;
    const name = e.kind === "lun" ? lunExportName(lunName) : snapshotExportName(e.snapshotId ?? "", lunName);
    const host = e.hostId === null ? null : (this.control.data.hosts.find((h) => h.id === e.hostId) ?? null);
    return {
      exportId: e.id,
      kind: e.kind === "lun" ? v1.ExportKind.LUN : v1.ExportKind.SNAPSHOT,
      lunId: e.lunId,
      snapshotId: e.snapshotId ?? "",
      hostId: e.hostId ?? "",
      exportName: name,
      uri: this.deps.nbdUri(name, host),
      readOnly: e.kind === "snapshot",
    };
  }

  private host(id: string): HostRecord {
    const h = this.control.data.hosts.find((x) => x.id === nonEmpty("host_id", id) || x.name === id);
    if (!h) throw new NotFoundError(`host ${quote(id)} not found`);
    return h;
  }

  private lun(id: string): LunInfo {
    return this.store.getLun(nonEmpty("lun_id", id));
  }

  // ------------------------------------------------------------ array

  async getArrayInfo(): Promise<v1.IArrayInfo> {
    return {
      vendor: VENDOR,
      model: MODEL,
      serial: this.control.data.serial,
      contractVersion: CONTRACT_VERSION,
      blockSizeBytes: this.store.capabilities.blockSize,
      capabilities: {
        groupSnapshots: true,
        cbtGranularityBytes: this.store.capabilities.cbtGranularityBytes,
        revert: true,
        clone: true,
        maxSnapshotsPerLun: this.store.capabilities.maxSnapshotsPerLun,
        cbtFromDeletedBase: this.store.capabilities.cbtFromDeletedBase,
        cbtLiveTarget: this.store.capabilities.cbtLiveTarget,
        resize: true,
        nbdDirtyBitmaps: true,
        lunMasking: true,
      },
    };
  }

  async getPoolStats(): Promise<v1.IPoolStats> {
    const p = this.store.poolInfo();
    const luns = this.store.listLuns();
    return {
      capacityBytes: p.capacityBytes ?? 0,
      usedBytes: p.usedBytes,
      provisionedBytes: luns.reduce((n, l) => n + l.size, 0),
      lunCount: luns.length,
      snapshotCount: this.store.listSnapshots().length,
      exportCount: this.control.data.exports.length,
      hostCount: this.control.data.hosts.length,
      nbdBytesRead: this.deps.counters?.bytesRead ?? 0,
      nbdSnapshotBytesRead: this.deps.counters?.snapshotBytesRead ?? 0,
      nbdBytesWritten: this.deps.counters?.bytesWritten ?? 0,
    };
  }

  // ------------------------------------------------------------ LUNs

  async createLun(req: v1.CreateLunRequest): Promise<v1.ILun> {
    nonEmpty("name", req.name);
    if (!Number.isSafeInteger(req.sizeBytes) || req.sizeBytes <= 0) throw new InvalidArgumentError(`size_bytes must be > 0, got ${req.sizeBytes}`);
    const bs = this.store.capabilities.blockSize;
    const size = Math.ceil(req.sizeBytes / bs) * bs;
    return this.lunView(await this.store.createLun({ name: req.name, size }));
  }

  async getLun(req: v1.GetLunRequest): Promise<v1.ILun> {
    if ((req.lunId === "") === (req.name === "")) throw new InvalidArgumentError("give exactly one of lun_id and name");
    const ref = req.lunId !== "" ? req.lunId : req.name;
    const l = this.store.getLun(ref);
    if (req.lunId !== "" ? l.id !== req.lunId : l.name !== req.name) throw new NotFoundError(`LUN ${quote(ref)} not found`);
    return this.lunView(l);
  }

  async listLuns(req: v1.ListLunsRequest): Promise<v1.IListLunsResponse> {
    const p = page(this.store.listLuns(), (l) => l.id, req.maxEntries, req.startingToken);
    return { luns: p.items.map((l) => this.lunView(l)), nextToken: p.nextToken };
  }

  async resizeLun(req: v1.ResizeLunRequest): Promise<v1.ILun> {
    const lun = this.lun(req.lunId);
    if (!Number.isSafeInteger(req.sizeBytes) || req.sizeBytes <= 0) throw new InvalidArgumentError(`size_bytes must be > 0, got ${req.sizeBytes}`);
    const size = Math.ceil(req.sizeBytes / lun.blockSize) * lun.blockSize;
    if (size === lun.size) return this.lunView(lun);
    return this.lunView(await this.store.resizeLun(lun.id, size));
  }

  async deleteLun(req: v1.DeleteLunRequest): Promise<v1.IDeleteLunResponse> {
    nonEmpty("lun_id", req.lunId);
    return this.mutate(async () => {
      let lun: LunInfo;
      try {
        lun = this.store.getLun(req.lunId);
      } catch (e: unknown) {
        if (isNotFound(e)) return {};
        throw e;
      }
      const maps = this.control.data.mappings.filter((m) => m.lunId === lun.id).length;
      if (maps > 0) throw new FailedPreconditionError(`LUN ${quote(lun.name)} is mapped to ${maps} host(s); unmap it first`);
      const exps = this.control.data.exports.filter((e) => e.lunId === lun.id).length;
      if (exps > 0) throw new FailedPreconditionError(`LUN ${quote(lun.name)} has ${exps} export(s); delete them first`);
      await this.store.deleteLun(lun.id);
      return {};
    });
  }

  // ------------------------------------------------------------ hosts

  async createHost(req: v1.CreateHostRequest): Promise<v1.IHost> {
    checkName("host", nonEmpty("name", req.name));
    const identity = req.pskIdentity === "" ? req.name : req.pskIdentity;
    if (identity.includes(":") || identity.length > 128) throw new InvalidArgumentError(`psk_identity must be at most 128 characters without ":"`);
    if (req.pskKey.length < MIN_PSK_BYTES) throw new InvalidArgumentError(`psk_key must be at least ${MIN_PSK_BYTES} bytes`);
    const key = Buffer.from(req.pskKey).toString("hex");
    return this.mutate(() => {
      const d = this.control.data;
      const same = d.hosts.find((h) => h.name === req.name);
      if (same) {
        if (same.pskIdentity === identity && same.pskKey === key) return this.hostView(same);
        throw new AlreadyExistsError(`a host named ${quote(req.name)} already exists with another identity or key`);
      }
      if (d.hosts.some((h) => h.pskIdentity === identity)) throw new AlreadyExistsError(`psk identity ${quote(identity)} belongs to another host`);
      const h: HostRecord = { id: newControlId("host"), name: req.name, pskIdentity: identity, pskKey: key, createdAt: new Date().toISOString() };
      d.hosts.push(h);
      this.deps.psk.set(identity, Buffer.from(key, "hex"));
      return this.hostView(h);
    });
  }

  async listHosts(req: v1.ListHostsRequest): Promise<v1.IListHostsResponse> {
    const p = page(this.control.data.hosts, (h) => h.id, req.maxEntries, req.startingToken);
    return { hosts: p.items.map((h) => this.hostView(h)), nextToken: p.nextToken };
  }

  async deleteHost(req: v1.DeleteHostRequest): Promise<v1.IDeleteHostResponse> {
    nonEmpty("host_id", req.hostId);
    return this.mutate(() => {
      const d = this.control.data;
      const h = d.hosts.find((x) => x.id === req.hostId);
      if (!h) return {};
      if (d.mappings.some((m) => m.hostId === h.id)) throw new FailedPreconditionError(`host ${quote(h.name)} still has mapped LUNs; unmap them first`);
      if (d.exports.some((e) => e.hostId === h.id)) throw new FailedPreconditionError(`host ${quote(h.name)} still has exports; delete them first`);
      d.hosts = d.hosts.filter((x) => x.id !== h.id);
      this.deps.psk.delete(h.pskIdentity);
      return {};
    });
  }

  async mapLun(req: v1.MapLunRequest): Promise<v1.IMapLunResponse> {
    return this.mutate(() => {
      const lun = this.lun(req.lunId);
      const h = this.host(req.hostId);
      const d = this.control.data;
      if (!d.mappings.some((m) => m.lunId === lun.id && m.hostId === h.id)) d.mappings.push({ lunId: lun.id, hostId: h.id });
      return {};
    });
  }

  async unmapLun(req: v1.UnmapLunRequest): Promise<v1.IUnmapLunResponse> {
    nonEmpty("lun_id", req.lunId);
    nonEmpty("host_id", req.hostId);
    return this.mutate(() => {
      const d = this.control.data;
      d.mappings = d.mappings.filter((m) => !(m.lunId === req.lunId && m.hostId === req.hostId));
      return {};
    });
  }

  // ------------------------------------------------------------ snapshots

  async createSnapshot(req: v1.CreateSnapshotRequest): Promise<v1.ICreateSnapshotResponse> {
    nonEmpty("name", req.name);
    if (req.lunIds.length === 0) throw new InvalidArgumentError("lun_ids must name at least one LUN");
    if (req.lunIds.some((id) => id === "")) throw new InvalidArgumentError("lun_ids contains an empty id");
    if (new Set(req.lunIds).size !== req.lunIds.length) throw new InvalidArgumentError("lun_ids lists the same LUN twice");
    const luns = req.lunIds.map((id) => this.store.getLun(id));
    const [only] = luns;
    const plain = luns.length === 1 ? only : undefined;
    return this.snapCreates.run(async () => {
      this.checkSnapshotNameSpace(req.name, plain !== undefined);
      if (plain !== undefined) return { snapshots: [this.snapView(await this.store.createSnapshot({ lun: plain.id, name: req.name }))], groupSnapshotId: "" };
      return this.createGroup(req.name, luns);
    });
  }

  /** A name already used by the other kind of snapshot is ALREADY_EXISTS (docs/contract.md "Names"). */
  private checkSnapshotNameSpace(name: string, plain: boolean): void {
    if (plain) {
      const g = this.store.listGroupSnapshots().find((x) => x.name === name);
      if (g) throw new AlreadyExistsError(`the name ${quote(name)} is taken by a group snapshot (${g.members.length} LUNs)`);
    } else if (this.store.listSnapshots().some((s) => s.groupId === null && s.name === name)) {
      throw new AlreadyExistsError(`the name ${quote(name)} is taken by a snapshot of one LUN`);
    }
  }

  private async createGroup(name: string, luns: LunInfo[]): Promise<v1.ICreateSnapshotResponse> {
    const g = await this.store.createGroupSnapshot({ name, luns: luns.map((l) => l.id) });
    const byLun = new Map(g.members.map((s) => [s.lunId, s]));
    const ordered = luns.map((l) => byLun.get(l.id)).filter((s): s is SnapshotInfo => s !== undefined);
    return { snapshots: ordered.map((s) => this.snapView(s)), groupSnapshotId: g.id };
  }

  async getSnapshot(req: v1.GetSnapshotRequest): Promise<v1.ISnapshot> {
    nonEmpty("snapshot_id", req.snapshotId);
    return this.snapView(this.store.getSnapshot(req.snapshotId));
  }

  async listSnapshots(req: v1.ListSnapshotsRequest): Promise<v1.IListSnapshotsResponse> {
    let all: SnapshotInfo[];
    try {
      all = this.store.listSnapshots(req.lunId !== "" ? { lun: req.lunId } : {});
    } catch (e: unknown) {
      if (isNotFound(e)) all = [];
      else throw e;
    }
    const filtered = all.filter(
      (s) => (req.groupSnapshotId === "" || s.groupId === req.groupSnapshotId) && (req.snapshotId === "" || s.id === req.snapshotId) && (req.lunId === "" || s.lunId === req.lunId),
    );
    const p = page(filtered, (s) => s.id, req.maxEntries, req.startingToken);
    return { snapshots: p.items.map((s) => this.snapView(s)), nextToken: p.nextToken };
  }

  async deleteSnapshot(req: v1.DeleteSnapshotRequest): Promise<v1.IDeleteSnapshotResponse> {
    nonEmpty("snapshot_id", req.snapshotId);
    return this.mutate(async () => {
      let s: SnapshotInfo;
      try {
        s = this.store.getSnapshot(req.snapshotId);
      } catch (e: unknown) {
        if (isNotFound(e)) return {};
        throw e;
      }
      if (this.control.data.exports.some((e) => e.snapshotId === s.id)) throw new FailedPreconditionError(`snapshot ${s.id} is exported; delete its exports first`);
      await this.store.deleteSnapshot(s.id);
      return {};
    });
  }

  async getGroupSnapshot(req: v1.GetGroupSnapshotRequest): Promise<v1.IGroupSnapshot> {
    const g = this.store.getGroupSnapshot(nonEmpty("group_snapshot_id", req.groupSnapshotId));
    return { groupSnapshotId: g.id, name: g.name, snapshots: g.members.map((s) => this.snapView(s)), creationTime: g.createdAt, readyToUse: true };
  }

  async deleteGroupSnapshot(req: v1.DeleteGroupSnapshotRequest): Promise<v1.IDeleteGroupSnapshotResponse> {
    nonEmpty("group_snapshot_id", req.groupSnapshotId);
    return this.mutate(async () => {
      let members: SnapshotInfo[];
      try {
        members = this.store.getGroupSnapshot(req.groupSnapshotId).members;
      } catch (e: unknown) {
        if (isNotFound(e)) return {};
        throw e;
      }
      if (req.snapshotIds.length > 0) {
        const want = new Set(req.snapshotIds);
        if (want.size !== members.length || !members.every((m) => want.has(m.id))) {
          throw new InvalidArgumentError(`snapshot_ids do not match the members of group snapshot ${req.groupSnapshotId}`);
        }
      }
      const exported = members.filter((m) => this.control.data.exports.some((e) => e.snapshotId === m.id));
      if (exported.length > 0) throw new FailedPreconditionError(`member snapshot(s) ${exported.map((m) => m.id).join(", ")} are exported; delete the exports first`);
      await this.store.deleteGroupSnapshot(req.groupSnapshotId);
      return {};
    });
  }

  // ------------------------------------------------------------ CBT

  async *getChangedBlocks(req: v1.GetChangedBlocksRequest): AsyncIterable<v1.IBlockMetadataResponse> {
    nonEmpty("base_snapshot_id", req.baseSnapshotId);
    const maxResults = checkMaxResults(req.maxResults);
    let target: { snapshot: string } | { lun: string };
    if (req.targetSnapshotId !== "") {
      const t = this.store.getSnapshot(req.targetSnapshotId);
      if (req.lunId !== "" && t.lunId !== req.lunId) throw new InvalidArgumentError(`target snapshot ${t.id} is not a snapshot of LUN ${req.lunId}`);
      target = { snapshot: t.id };
    } else {
      if (req.lunId === "") throw new InvalidArgumentError("give target_snapshot_id, or lun_id to diff against the live LUN");
      target = { lun: this.lun(req.lunId).id };
    }
    const r = await this.store.changedExtents(req.baseSnapshotId, target);
    const extents = r.extents.map((e) => ({ offset: e.offset, length: e.length, flag: e.flag === "DATA" ? v1.ExtentType.DATA : v1.ExtentType.ZERO }));
    yield* frame(extents, r.size, req.startingOffset, maxResults);
  }

  async *getAllocatedBlocks(req: v1.GetAllocatedBlocksRequest): AsyncIterable<v1.IBlockMetadataResponse> {
    const maxResults = checkMaxResults(req.maxResults);
    let target: { snapshot: string } | { lun: string };
    if (req.snapshotId !== "") {
      const s = this.store.getSnapshot(req.snapshotId);
      if (req.lunId !== "" && s.lunId !== req.lunId) throw new InvalidArgumentError(`snapshot ${s.id} is not a snapshot of LUN ${req.lunId}`);
      target = { snapshot: s.id };
    } else {
      target = { lun: this.lun(req.lunId).id };
    }
    const r = await this.store.allocatedExtents(target);
    yield* frame(
      r.extents.map((e) => ({ offset: e.offset, length: e.length, flag: v1.ExtentType.DATA })),
      r.size,
      req.startingOffset,
      maxResults,
    );
  }

  // ------------------------------------------------------------ revert, clone

  async revertLun(req: v1.RevertLunRequest): Promise<v1.ILun> {
    const lun = this.lun(req.lunId);
    const s = this.store.getSnapshot(nonEmpty("snapshot_id", req.snapshotId));
    if (s.lunId !== lun.id) throw new InvalidArgumentError(`snapshot ${s.id} is not a snapshot of LUN ${lun.name}; clone it instead`);
    return this.lunView(await this.store.revertLun(lun.id, s.id));
  }

  async cloneSnapshot(req: v1.CloneSnapshotRequest): Promise<v1.ILun> {
    nonEmpty("name", req.name);
    const s = this.store.getSnapshot(nonEmpty("snapshot_id", req.snapshotId));
    return this.lunView(await this.store.cloneSnapshot({ snapshot: s.id, name: req.name }));
  }

  // ------------------------------------------------------------ exports

  async createExport(req: v1.CreateExportRequest): Promise<v1.IExport> {
    if ((req.lunId === "") === (req.snapshotId === "")) throw new InvalidArgumentError("give exactly one of lun_id and snapshot_id");
    return this.mutate(() => {
      const hostId = req.hostId === "" ? null : this.host(req.hostId).id;
      let rec: Omit<ExportRecord, "id" | "createdAt">;
      if (req.lunId !== "") {
        rec = { kind: "lun", lunId: this.lun(req.lunId).id, snapshotId: null, hostId };
      } else {
        const s = this.store.getSnapshot(req.snapshotId);
        rec = { kind: "snapshot", lunId: s.lunId, snapshotId: s.id, hostId };
      }
      const d = this.control.data;
      const existing = d.exports.find((e) => e.kind === rec.kind && e.lunId === rec.lunId && e.snapshotId === rec.snapshotId && e.hostId === rec.hostId);
      if (existing) return this.exportView(existing);
      const e: ExportRecord = { id: newControlId("exp"), ...rec, createdAt: new Date().toISOString() };
      d.exports.push(e);
      return this.exportView(e);
    });
  }

  async listExports(req: v1.ListExportsRequest): Promise<v1.IListExportsResponse> {
    const all = this.control.data.exports.filter((e) => req.hostId === "" || e.hostId === req.hostId);
    const p = page(all, (e) => e.id, req.maxEntries, req.startingToken);
    return { exports: p.items.map((e) => this.exportView(e)), nextToken: p.nextToken };
  }

  async deleteExport(req: v1.DeleteExportRequest): Promise<v1.IDeleteExportResponse> {
    nonEmpty("export_id", req.exportId);
    return this.mutate(() => {
      const d = this.control.data;
      d.exports = d.exports.filter((e) => e.id !== req.exportId);
      return {};
    });
  }
}

/** The effective `max_results` of a block-metadata request (0 = the array's default, capped). */
export function checkMaxResults(n: number): number {
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`max_results must be >= 0, got ${n}`);
  return n === 0 ? DEFAULT_MAX_RESULTS : Math.min(n, MAX_MAX_RESULTS);
}

/** A CBT extent as the wire types it. */
export type TypedExtent = FlaggedExtent<v1.ExtentType>;

/**
 * Frames a sorted extent list as a CSI-style stream: resume at `startingOffset`
 * (the first extent ends after it; it may start before), `maxResults` extents
 * per message, and always at least one message so the caller learns the volume
 * capacity.
 */
export function* frame(extents: readonly FlaggedExtent<v1.ExtentType>[], size: number, startingOffset: number, maxResults: number): Generator<v1.IBlockMetadataResponse> {
  if (!Number.isSafeInteger(startingOffset) || startingOffset < 0 || startingOffset > size) {
    throw new OutOfRangeError(`starting_offset ${startingOffset} is outside the volume (0..${size})`);
  }
  let lo = 0;
  let hi = extents.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const e = extents[mid];
    if (e !== undefined && e.offset + e.length <= startingOffset) lo = mid + 1;
    else hi = mid;
  }
  const head = { blockMetadataType: v1.BlockMetadataType.VARIABLE_LENGTH, volumeCapacityBytes: size };
  if (lo >= extents.length) {
    yield { ...head, blockMetadata: [] };
    return;
  }
  for (let i = lo; i < extents.length; i += maxResults) {
    yield { ...head, blockMetadata: extents.slice(i, i + maxResults).map((e) => ({ byteOffset: e.offset, sizeBytes: e.length, type: e.flag })) };
  }
}
