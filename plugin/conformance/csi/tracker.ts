/**
 * The CSI suite's resource tracker: at the end of the run it deletes, through
 * CSI alone, everything the suite made, whether the checks passed or not.
 *
 * A sweep, like the array suite's (../tracker.ts): NBD connections and exports
 * (data checks) first, then for each volume the suite created, newest first,
 * every snapshot ListSnapshots reports for it — a group member through
 * DeleteVolumeGroupSnapshot of its group, with the member list the spec asks
 * for — then the volume. So a group a non-idempotent driver made twice, or a
 * snapshot it failed to report, goes too. What cannot be deleted is a leak line.
 */
import { errorMessage } from "../../../src/errors.js";
import type { NbdClient } from "../../../src/nbd/client.js";
import type { ArrayClient } from "../../../src/rpc/array-client.js";
import type { CsiClients } from "../../../src/rpc/csi-service-defs.js";
import { allPages } from "../../../src/rpc/paging.js";

export class CsiTracker {
  private readonly volumes: string[] = [];
  private readonly exports: string[] = [];
  private readonly clients: NbdClient[] = [];

  constructor(
    private readonly csi: CsiClients,
    private readonly array: ArrayClient | undefined,
    private readonly secrets: Record<string, string>,
  ) {}

  volume(id: string): void {
    if (!this.volumes.includes(id)) this.volumes.push(id);
  }
  export(id: string): void {
    this.exports.push(id);
  }
  client<T extends NbdClient>(c: T): T {
    this.clients.push(c);
    return c;
  }

  async cleanup(): Promise<string[]> {
    const leaks: string[] = [];
    for (const c of this.clients.splice(0)) await c.close().catch(() => undefined);
    for (const id of this.exports.splice(0).reverse()) {
      await this.array?.deleteExport({ exportId: id }).catch((e: unknown) => leaks.push(`export ${id}: ${errorMessage(e)}`));
    }
    // Groups span volumes: list every volume's snapshots first, so a group's
    // member list (which DeleteVolumeGroupSnapshot requires) is complete.
    const volumes = this.volumes.splice(0).reverse();
    const groups = new Map<string, string[]>();
    const singles = new Map<string, string[]>();
    for (const volumeId of volumes) {
      try {
        const snaps = await this.list(volumeId);
        singles.set(volumeId, snaps.filter((s) => s.groupSnapshotId === "").map((s) => s.snapshotId).reverse());
        for (const s of snaps) if (s.groupSnapshotId !== "") groups.set(s.groupSnapshotId, [...(groups.get(s.groupSnapshotId) ?? []), s.snapshotId]);
      } catch (e: unknown) {
        leaks.push(`snapshots of volume ${volumeId}: ${errorMessage(e)}`);
      }
    }
    const secrets = this.secrets;
    for (const [g, members] of groups) {
      await this.csi.groupController.deleteVolumeGroupSnapshot({ groupSnapshotId: g, snapshotIds: members, secrets }).catch((e: unknown) => leaks.push(`group snapshot ${g}: ${errorMessage(e)}`));
    }
    for (const volumeId of volumes) {
      try {
        for (const id of singles.get(volumeId) ?? []) await this.csi.controller.deleteSnapshot({ snapshotId: id, secrets });
        await this.csi.controller.deleteVolume({ volumeId, secrets });
      } catch (e: unknown) {
        leaks.push(`volume ${volumeId}: ${errorMessage(e)}`);
      }
    }
    return leaks;
  }

  private list(volumeId: string): Promise<{ snapshotId: string; groupSnapshotId: string }[]> {
    return allPages("ListSnapshots", (startingToken) =>
      this.csi.controller
        .listSnapshots({ sourceVolumeId: volumeId, startingToken, secrets: this.secrets })
        .then((r) => ({ items: r.entries.flatMap((e) => (e.snapshot !== undefined ? [e.snapshot] : [])), next: r.nextToken })),
    );
  }
}
