/**
 * CSI GroupController (spec "Group Controller Service RPCs") over the array's
 * consistency-group snapshots: CreateVolumeGroupSnapshot is an ArrayService
 * CreateSnapshot of several LUNs, which is write-order consistent (fence, drain,
 * cut, unfence) or fails, idempotent on name with the same LUN set and
 * ALREADY_EXISTS for another. Delete answers OK when the group is gone; Get of
 * a gone group is NOT_FOUND; a `snapshot_ids` list that is not exactly the
 * members is INVALID_ARGUMENT for both. Every member carries group_snapshot_id.
 *
 * The array's group snapshot has at least two LUNs (CreateSnapshot of one LUN
 * is a plain snapshot), so a group of one volume is INVALID_ARGUMENT here.
 */
import { InvalidArgumentError } from "../../../src/errors.js";
import type { ArrayServiceImpl } from "../../../src/rpc/array-service-def.js";
import { csi } from "../../../src/rpc/csi-proto.js";
import type { CsiGroupControllerImpl } from "../../../src/rpc/csi-service-defs.js";
import { v1 } from "../../../src/rpc/proto.js";
import { groupSnapshotOf, noParameters, required } from "./views.js";

function checkMembers(group: v1.IGroupSnapshot, snapshotIds: readonly string[]): void {
  if (snapshotIds.length === 0) return;
  const members = new Set((group.snapshots ?? []).map((s) => s.snapshotId ?? ""));
  const want = new Set(snapshotIds);
  if (want.size !== members.size || ![...want].every((id) => members.has(id))) {
    throw new InvalidArgumentError(`snapshot_ids do not match the members of group snapshot ${group.groupSnapshotId ?? ""}`);
  }
}

export function csiGroupController(array: ArrayServiceImpl): CsiGroupControllerImpl {
  return {
    groupControllerGetCapabilities: async () => ({
      capabilities: [{ rpc: { type: csi.GroupControllerServiceCapability.RPC.Type.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT } }],
    }),

    createVolumeGroupSnapshot: async (req, ctx) => {
      const name = required("name", req.name);
      if (req.sourceVolumeIds.length === 0) throw new InvalidArgumentError("source_volume_ids is required");
      if (req.sourceVolumeIds.length === 1) throw new InvalidArgumentError("source_volume_ids names one volume; a group snapshot on this array has at least two (use CreateSnapshot)");
      noParameters("parameters", req.parameters);
      const made = await array.createSnapshot(v1.CreateSnapshotRequest.create({ name, lunIds: req.sourceVolumeIds }), ctx);
      const group = await array.getGroupSnapshot(v1.GetGroupSnapshotRequest.create({ groupSnapshotId: made.groupSnapshotId ?? "" }), ctx);
      return { groupSnapshot: groupSnapshotOf(group) };
    },

    getVolumeGroupSnapshot: async (req, ctx) => {
      const group = await array.getGroupSnapshot(v1.GetGroupSnapshotRequest.create({ groupSnapshotId: required("group_snapshot_id", req.groupSnapshotId) }), ctx);
      checkMembers(group, req.snapshotIds);
      return { groupSnapshot: groupSnapshotOf(group) };
    },

    deleteVolumeGroupSnapshot: async (req, ctx) => {
      const groupSnapshotId = required("group_snapshot_id", req.groupSnapshotId);
      await array.deleteGroupSnapshot(v1.DeleteGroupSnapshotRequest.create({ groupSnapshotId, snapshotIds: req.snapshotIds }), ctx);
      return {};
    },
  };
}
