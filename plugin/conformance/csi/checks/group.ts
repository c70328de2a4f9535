/**
 * GroupController semantics (CSI spec, "CreateVolumeGroupSnapshot",
 * "DeleteVolumeGroupSnapshot", "GetVolumeGroupSnapshot" and their error
 * tables): idempotent by name, ALREADY_EXISTS for the same name with other
 * sources, membership as the VolumeGroupSnapshot message requires it, and
 * deletion (members go with the group; OK when already gone). Each check cuts
 * its own group of two fresh volumes, so one failure does not cascade.
 */
import { expectCode, must, violation } from "../../assert.js";
import type { CsiContext, CsiGroupSnapshot } from "../context.js";
import { csiCheck } from "../registry.js";

const MEMBER_BYTES = 4 * 1024 * 1024;

async function twoVolumes(t: CsiContext): Promise<[string, string]> {
  const a = await t.createVolume("ga", MEMBER_BYTES);
  const b = await t.createVolume("gb", MEMBER_BYTES);
  return [a.volumeId, b.volumeId];
}

function memberIds(g: CsiGroupSnapshot): string[] {
  return g.snapshots.map((s) => s.snapshotId).sort();
}

csiCheck(
  "csi.group.members",
  "a VolumeGroupSnapshot has a group_snapshot_id, creation_time, one snapshot per source volume naming that volume and the group in group_snapshot_id, and ready_to_use false if any member is not ready; GetVolumeGroupSnapshot and ListSnapshots agree (VolumeGroupSnapshot; Snapshot.group_snapshot_id)",
  async (t) => {
    const vols = await twoVolumes(t);
    const g = await t.groupSnapshot(t.name("grp"), vols);
    must(g.groupSnapshotId !== "", "group_snapshot_id is empty");
    must(g.creationTime !== undefined && g.creationTime.seconds > 0, "creation_time is not set");
    must(g.snapshots.length === vols.length, `${g.snapshots.length} member snapshots for ${vols.length} source volumes`);
    must([...g.snapshots.map((s) => s.sourceVolumeId)].sort().join(",") === [...vols].sort().join(","), `members' source_volume_id ${g.snapshots.map((s) => s.sourceVolumeId).join(",")}, requested ${vols.join(",")}`);
    for (const s of g.snapshots) {
      must(s.snapshotId !== "", "a member has an empty snapshot_id");
      must(s.groupSnapshotId === g.groupSnapshotId, `member ${s.snapshotId} has group_snapshot_id ${JSON.stringify(s.groupSnapshotId)}, the group is ${g.groupSnapshotId}`);
      must(s.creationTime !== undefined, `member ${s.snapshotId} has no creation_time`);
    }
    must(new Set(memberIds(g)).size === vols.length, "two members share a snapshot_id");
    if (g.snapshots.some((s) => !s.readyToUse)) must(!g.readyToUse, "ready_to_use is true although a member is not ready");
    const got = (await t.csi.groupController.getVolumeGroupSnapshot({ groupSnapshotId: g.groupSnapshotId, snapshotIds: memberIds(g), secrets: t.secrets })).groupSnapshot;
    must(got !== undefined, "GetVolumeGroupSnapshot answered without group_snapshot");
    must(memberIds(got).join(",") === memberIds(g).join(","), `GetVolumeGroupSnapshot lists members ${memberIds(got).join(",")}, CreateVolumeGroupSnapshot gave ${memberIds(g).join(",")}`);
    for (const s of g.snapshots) {
      const listed = (await t.csi.controller.listSnapshots({ snapshotId: s.snapshotId, secrets: t.secrets })).entries.map((e) => e.snapshot);
      must(listed.length === 1 && listed[0]?.groupSnapshotId === g.groupSnapshotId, `ListSnapshots(snapshot_id=${s.snapshotId}) gives ${JSON.stringify(listed)}, expected the member naming group ${g.groupSnapshotId}`);
    }
  },
);

csiCheck(
  "csi.group.idempotent",
  "CreateVolumeGroupSnapshot called again with the same name and source_volume_ids creates nothing new: the same group_snapshot_id and the same member snapshots (CreateVolumeGroupSnapshot: MUST be idempotent)",
  async (t) => {
    const vols = await twoVolumes(t);
    const name = t.name("idem");
    const first = await t.groupSnapshot(name, vols);
    for (let i = 1; i <= t.idempotentCount; i++) {
      const again = await t.groupSnapshot(name, i % 2 === 0 ? vols : [...vols].reverse());
      if (again.groupSnapshotId !== first.groupSnapshotId) violation(`call ${i + 1} with name ${name} made group ${again.groupSnapshotId}, the first call made ${first.groupSnapshotId}`);
      must(memberIds(again).join(",") === memberIds(first).join(","), `call ${i + 1} answered members ${memberIds(again).join(",")}, the first ${memberIds(first).join(",")}`);
    }
    for (const v of vols) {
      const groups = new Set((await t.csi.controller.listSnapshots({ sourceVolumeId: v, secrets: t.secrets })).entries.map((e) => e.snapshot?.groupSnapshotId).filter((g) => g !== undefined && g !== ""));
      must(groups.size === 1, `volume ${v} has member snapshots of ${groups.size} groups after ${t.idempotentCount + 1} calls with one name: ${[...groups].join(", ")}`);
    }
  },
);

csiCheck(
  "csi.group.already-exists",
  "CreateVolumeGroupSnapshot with a name in use for other source_volume_ids is ALREADY_EXISTS (CreateVolumeGroupSnapshot Errors: group snapshot already exists but is incompatible)",
  async (t) => {
    const vols = await twoVolumes(t);
    const c = await t.createVolume("gc", MEMBER_BYTES);
    const name = t.name("conflict");
    await t.groupSnapshot(name, vols);
    await expectCode(() => t.groupSnapshot(name, [vols[0], c.volumeId]), "ALREADY_EXISTS", "same name, other source volumes");
    await expectCode(() => t.groupSnapshot(name, [...vols, c.volumeId]), "ALREADY_EXISTS", "same name, the source volumes and one more");
  },
);

csiCheck(
  "csi.group.delete-removes-members",
  "DeleteVolumeGroupSnapshot deletes the group and every member snapshot: GetVolumeGroupSnapshot is then NOT_FOUND and ListSnapshots no longer lists the members (DeleteVolumeGroupSnapshot)",
  async (t) => {
    const g = await t.groupSnapshot(t.name("del"), await twoVolumes(t));
    await t.csi.groupController.deleteVolumeGroupSnapshot({ groupSnapshotId: g.groupSnapshotId, snapshotIds: memberIds(g), secrets: t.secrets });
    await expectCode(() => t.csi.groupController.getVolumeGroupSnapshot({ groupSnapshotId: g.groupSnapshotId, snapshotIds: memberIds(g), secrets: t.secrets }), "NOT_FOUND", "GetVolumeGroupSnapshot after delete");
    for (const id of memberIds(g)) {
      const left = (await t.csi.controller.listSnapshots({ snapshotId: id, secrets: t.secrets })).entries;
      must(left.length === 0, `member ${id} is still listed after its group was deleted`);
    }
  },
);

csiCheck(
  "csi.group.delete-gone-ok",
  "DeleteVolumeGroupSnapshot of a group that is already gone (or never existed) answers OK (DeleteVolumeGroupSnapshot: MUST be idempotent, MUST reply 0 OK)",
  async (t) => {
    const g = await t.groupSnapshot(t.name("gone"), await twoVolumes(t));
    const req = { groupSnapshotId: g.groupSnapshotId, snapshotIds: memberIds(g), secrets: t.secrets };
    await t.csi.groupController.deleteVolumeGroupSnapshot(req);
    for (let i = 0; i < t.idempotentCount; i++) {
      try {
        await t.csi.groupController.deleteVolumeGroupSnapshot(req);
      } catch (e: unknown) {
        violation(`deleting group ${g.groupSnapshotId} again (call ${i + 2}) failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  },
);
