/**
 * The resource tracker (csi-sanity's `Resources`): everything the suite creates
 * on the array is recorded here and deleted at the end of its area, whether the
 * checks passed, failed or threw.
 *
 * Cleanup is a sweep rather than an undo log, so it also removes what a broken
 * array left behind (a group snapshot it failed to report, an export created
 * by a half-failed call): for each tracked LUN, newest first, it deletes the
 * exports of the LUN and of its snapshots, every snapshot (a group member
 * through its group), every mapping, then the LUN; then the tracked hosts.
 * NBD connections the checks opened are closed first. What cannot be deleted is
 * reported as a leak, so a vendor knows what to remove by hand.
 */
import { SanboxError, errorMessage } from "../../src/errors.js";
import type { NbdClient } from "../../src/nbd/client.js";
import type { ArrayClient } from "../../src/rpc/array-client.js";
import { allPages } from "../../src/rpc/paging.js";

function isNotFound(e: unknown): boolean {
  return e instanceof SanboxError && e.code === "NOT_FOUND";
}

export class ResourceTracker {
  private readonly luns: string[] = [];
  private readonly hosts: string[] = [];
  private readonly clients: NbdClient[] = [];
  private readonly closers: (() => Promise<void>)[] = [];

  constructor(private readonly array: ArrayClient | undefined) {}

  lun(id: string): void {
    if (!this.luns.includes(id)) this.luns.push(id);
  }
  host(id: string): void {
    if (!this.hosts.includes(id)) this.hosts.push(id);
  }
  client<T extends NbdClient>(c: T): T {
    this.clients.push(c);
    return c;
  }
  /** Anything else to undo (a temporary file, a second gRPC channel). */
  defer(fn: () => Promise<void>): void {
    this.closers.push(fn);
  }

  /** Deletes everything; returns one line per resource that could not be removed. */
  async cleanup(): Promise<string[]> {
    const leaks: string[] = [];
    for (const c of this.clients.splice(0)) await c.close().catch(() => undefined);
    for (const fn of this.closers.splice(0).reverse()) await fn().catch((e: unknown) => leaks.push(`cleanup step: ${errorMessage(e)}`));
    const array = this.array;
    if (array === undefined) return leaks;
    for (const lunId of this.luns.splice(0).reverse()) {
      try {
        await this.sweepLun(array, lunId);
      } catch (e: unknown) {
        leaks.push(`LUN ${lunId}: ${errorMessage(e)}`);
      }
    }
    for (const hostId of this.hosts.splice(0).reverse()) {
      try {
        const exps = await allPages("ListExports", (startingToken) => array.listExports({ hostId, startingToken }).then((r) => ({ items: r.exports, next: r.nextToken })));
        for (const e of exps) await array.deleteExport({ exportId: e.exportId });
        await array.deleteHost({ hostId });
      } catch (e: unknown) {
        leaks.push(`host ${hostId}: ${errorMessage(e)}`);
      }
    }
    return leaks;
  }

  private async sweepLun(array: ArrayClient, lunId: string): Promise<void> {
    let lun;
    try {
      lun = await array.getLun({ lunId });
    } catch (e: unknown) {
      if (isNotFound(e)) return;
      throw e;
    }
    const exps = await allPages("ListExports", (startingToken) => array.listExports({ startingToken }).then((r) => ({ items: r.exports, next: r.nextToken })));
    for (const e of exps) if (e.lunId === lunId) await array.deleteExport({ exportId: e.exportId });
    const snaps = await allPages("ListSnapshots", (startingToken) => array.listSnapshots({ lunId, startingToken }).then((r) => ({ items: r.snapshots, next: r.nextToken })));
    const groups = new Set<string>();
    for (const s of snaps.reverse()) {
      if (s.groupSnapshotId !== "") groups.add(s.groupSnapshotId);
      else await array.deleteSnapshot({ snapshotId: s.snapshotId });
    }
    for (const g of groups) {
      // Members on other LUNs may be exported too.
      const members = (await array.getGroupSnapshot({ groupSnapshotId: g }).catch(() => undefined))?.snapshots ?? [];
      for (const e of exps) if (members.some((m) => m.snapshotId === e.snapshotId)) await array.deleteExport({ exportId: e.exportId }).catch(() => undefined);
      await array.deleteGroupSnapshot({ groupSnapshotId: g });
    }
    for (const h of lun.mappedHostIds) await array.unmapLun({ lunId, hostId: h });
    await array.deleteLun({ lunId });
  }
}
