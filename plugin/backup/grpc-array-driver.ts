/**
 * The default array driver: ArrayService over gRPC (src/rpc/array-client.ts).
 * CBT and allocation streams go through `resumableExtents`, so a stream broken
 * by a transient error resumes at `starting_offset` without gaps or repeats.
 * A diff the array cannot compute (base outside the target's history, or a
 * base snapshot that is gone) surfaces as CbtUnavailableError: read in full.
 */
import { CbtUnavailableError, NotFoundError, SanboxError, UnsupportedError } from "../../src/errors.js";
import { connectArray, type ArrayClient, type ArrayClientOptions } from "../../src/rpc/array-client.js";
import type { ArrayReply } from "../../src/rpc/array-service-def.js";
import { resumableExtents, type TypedExtent } from "../../src/rpc/block-stream.js";
import { allPages, pagedItems } from "../../src/rpc/paging.js";
import type { ArrayDriver, ArrayFacts, ExportHandle, LunInfo, SnapshotInfo, SnapshotSet } from "./array-driver.js";

function lunInfo(l: ArrayReply<"getLun">): LunInfo {
  return { id: l.lunId, name: l.name, naa: l.naa.toLowerCase(), size: l.sizeBytes };
}

function snapInfo(s: ArrayReply<"getSnapshot">): SnapshotInfo {
  return { id: s.snapshotId, name: s.name, lunId: s.lunId, lunName: s.lunName, size: s.sizeBytes, groupId: s.groupSnapshotId };
}

export class GrpcArrayDriver implements ArrayDriver {
  private facts_: ArrayFacts | undefined;

  constructor(readonly client: ArrayClient) {}

  static connect(opts: ArrayClientOptions): GrpcArrayDriver {
    return new GrpcArrayDriver(connectArray(opts));
  }

  async facts(): Promise<ArrayFacts> {
    if (this.facts_) return this.facts_;
    const i = await this.client.getArrayInfo({});
    this.facts_ = {
      vendor: `${i.vendor} ${i.model}`.trim(),
      blockSize: i.blockSizeBytes,
      groupSnapshots: i.capabilities?.groupSnapshots ?? false,
      cbtGranularity: i.capabilities?.cbtGranularityBytes ?? 0,
    };
    return this.facts_;
  }

  async findLun(ref: { id?: string; name?: string; naa?: string }): Promise<LunInfo> {
    if (ref.id !== undefined) return lunInfo(await this.client.getLun({ lunId: ref.id }));
    if (ref.name !== undefined) return lunInfo(await this.client.getLun({ name: ref.name }));
    const naa = (ref.naa ?? "").toLowerCase();
    // Page by page, stopping at the hit: most lookups end on the first page.
    const luns = pagedItems("ListLuns", (startingToken) => this.client.listLuns({ startingToken }).then((r) => ({ items: r.luns, next: r.nextToken })));
    for await (const l of luns) if (l.naa.toLowerCase() === naa) return lunInfo(l);
    throw new NotFoundError(`no array LUN has NAA id ${naa}`);
  }

  async createLun(name: string, sizeBytes: number): Promise<LunInfo> {
    return lunInfo(await this.client.createLun({ name, sizeBytes }));
  }

  async deleteLun(lunId: string): Promise<void> {
    await this.client.deleteLun({ lunId });
  }

  async createSnapshot(name: string, lunIds: readonly string[]): Promise<SnapshotSet> {
    if (lunIds.length > 1 && !(await this.facts()).groupSnapshots) throw new UnsupportedError("the array does not offer group snapshots, so an RDM and its datastore cannot be cut at one point in time");
    const r = await this.client.createSnapshot({ name, lunIds: [...lunIds] });
    return { name, groupId: r.groupSnapshotId, members: r.snapshots.map(snapInfo) };
  }

  /** Deletes the snapshot (or group) and, first, any local exports of its members. */
  async deleteSnapshot(set: { groupId: string; members: readonly { id: string }[] }): Promise<void> {
    const ids = new Set(set.members.map((m) => m.id));
    // The whole list first: deleting between pages would skip exports on an
    // array whose tokens are positions (CSI leaves tokens opaque).
    const exports = await allPages("ListExports", (startingToken) => this.client.listExports({ startingToken }).then((r) => ({ items: r.exports, next: r.nextToken })));
    for (const e of exports) if (ids.has(e.snapshotId)) await this.client.deleteExport({ exportId: e.exportId });
    if (set.groupId !== "") {
      await this.client.deleteGroupSnapshot({ groupSnapshotId: set.groupId });
      return;
    }
    for (const m of set.members) await this.client.deleteSnapshot({ snapshotId: m.id });
  }

  async listSnapshots(lunId: string): Promise<SnapshotInfo[]> {
    const all = await allPages("ListSnapshots", (startingToken) => this.client.listSnapshots({ lunId, startingToken }).then((r) => ({ items: r.snapshots, next: r.nextToken })));
    return all.map(snapInfo);
  }

  async *changedExtents(baseSnapshotId: string, targetSnapshotId: string): AsyncIterable<TypedExtent> {
    if ((await this.facts()).cbtGranularity === 0) throw new CbtUnavailableError("the array does not offer changed-block tracking");
    try {
      yield* resumableExtents((s, o) => this.client.getChangedBlocks({ baseSnapshotId, targetSnapshotId, startingOffset: s }, o));
    } catch (e: unknown) {
      if (e instanceof SanboxError && e.code === "NOT_FOUND") throw new CbtUnavailableError(`CBT base ${baseSnapshotId} is gone: ${e.message}`);
      throw e;
    }
  }

  allocatedExtents(snapshotId: string): AsyncIterable<TypedExtent> {
    return resumableExtents((s, o) => this.client.getAllocatedBlocks({ snapshotId, startingOffset: s }, o));
  }

  async exportSnapshot(snapshotId: string): Promise<ExportHandle> {
    const e = await this.client.createExport({ snapshotId });
    return { id: e.exportId, uri: e.uri };
  }

  async exportLun(lunId: string): Promise<ExportHandle> {
    const e = await this.client.createExport({ lunId });
    return { id: e.exportId, uri: e.uri };
  }

  async deleteExport(exportId: string): Promise<void> {
    await this.client.deleteExport({ exportId });
  }

  close(): void {
    this.client.close();
  }
}
