/**
 * CSI Controller, the subset that backs the rest (spec "Controller Service
 * RPC"): volumes are LUNs, snapshots are the array's snapshots. Every call goes
 * through ArrayServiceImpl, so the array's own rules (idempotence on name,
 * OK on deleting what is gone, FAILED_PRECONDITION for what is in use) and its
 * failpoints apply unchanged; what CSI states differently is translated here:
 *
 *  - CreateVolume: block access only (a LUN has no file system); the size is
 *    capacity_range.required_bytes (default DEFAULT_VOLUME_BYTES) rounded up to
 *    the array's block size, OUT_OF_RANGE past limit_bytes. An existing volume
 *    of the same name is returned if its size fits the range and its source is
 *    the same, else ALREADY_EXISTS. A snapshot source is a clone (grown to
 *    required_bytes if that is larger); a volume source is INVALID_ARGUMENT
 *    (no CLONE_VOLUME capability).
 *  - DeleteSnapshot of a group member is INVALID_ARGUMENT ("Snapshot is part
 *    of a group"), where the array itself says FAILED_PRECONDITION.
 *  - Paging is the array's: max_entries, opaque tokens, ABORTED for a bad one.
 * `parameters` must be empty: this plugin has none.
 */
import { AlreadyExistsError, InvalidArgumentError, OutOfRangeError, SanboxError, quote } from "../../../src/errors.js";
import type { ArrayServiceImpl } from "../../../src/rpc/array-service-def.js";
import { csi } from "../../../src/rpc/csi-proto.js";
import type { CsiControllerImpl } from "../../../src/rpc/csi-service-defs.js";
import type { CallContext } from "../../../src/rpc/service.js";
import { v1 } from "../../../src/rpc/proto.js";
import { noParameters, required, snapshotOf, volumeOf } from "./views.js";

/** The size of a volume created without a capacity range. */
export const DEFAULT_VOLUME_BYTES = 1024 ** 3;

const CAPABILITIES = [
  csi.ControllerServiceCapability.RPC.Type.CREATE_DELETE_VOLUME,
  csi.ControllerServiceCapability.RPC.Type.LIST_VOLUMES,
  csi.ControllerServiceCapability.RPC.Type.CREATE_DELETE_SNAPSHOT,
  csi.ControllerServiceCapability.RPC.Type.LIST_SNAPSHOTS,
];

function isNotFound(e: unknown): boolean {
  return e instanceof SanboxError && e.code === "NOT_FOUND";
}

function checkCapabilities(caps: readonly csi.VolumeCapability.$Properties[]): void {
  if (caps.length === 0) throw new InvalidArgumentError("volume_capabilities is required");
  caps.forEach((c, i) => {
    if (c.mount !== undefined && c.mount !== null) throw new InvalidArgumentError(`volume_capabilities[${i}]: mount access is not supported; volumes are raw block LUNs`);
    if (c.block === undefined || c.block === null) throw new InvalidArgumentError(`volume_capabilities[${i}].access_type is required (block)`);
    const mode = c.accessMode?.mode ?? csi.VolumeCapability.AccessMode.Mode.UNKNOWN;
    if (mode === csi.VolumeCapability.AccessMode.Mode.UNKNOWN) throw new InvalidArgumentError(`volume_capabilities[${i}].access_mode is required`);
  });
}

interface Range {
  required: number;
  /** 0 = no limit. */
  limit: number;
}

function rangeOf(r: csi.CapacityRange.$Properties | null | undefined): Range {
  const required = r?.requiredBytes ?? 0;
  const limit = r?.limitBytes ?? 0;
  if (!Number.isSafeInteger(required) || required < 0) throw new InvalidArgumentError(`capacity_range.required_bytes must be >= 0, got ${required}`);
  if (!Number.isSafeInteger(limit) || limit < 0) throw new InvalidArgumentError(`capacity_range.limit_bytes must be >= 0, got ${limit}`);
  if (limit > 0 && limit < required) throw new InvalidArgumentError(`capacity_range.limit_bytes ${limit} is below required_bytes ${required}`);
  return { required, limit };
}

function fits(size: number, r: Range): boolean {
  return size >= r.required && (r.limit === 0 || size <= r.limit);
}

export function csiController(array: ArrayServiceImpl): CsiControllerImpl {
  const existingLun = async (name: string, ctx: CallContext): Promise<v1.ILun | undefined> => {
    try {
      return await array.getLun(v1.GetLunRequest.create({ name }), ctx);
    } catch (e: unknown) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  };

  return {
    controllerGetCapabilities: async () => ({ capabilities: CAPABILITIES.map((type) => ({ rpc: { type } })) }),

    createVolume: async (req, ctx) => {
      const name = required("name", req.name);
      checkCapabilities(req.volumeCapabilities);
      noParameters("parameters", req.parameters);
      noParameters("mutable_parameters", req.mutableParameters);
      const range = rangeOf(req.capacityRange);
      const source = req.volumeContentSource;
      if (source?.volume !== undefined && source.volume !== null) throw new InvalidArgumentError("volume_content_source.volume: cloning a volume is not supported (no CLONE_VOLUME); clone a snapshot");
      const sourceId = source?.snapshot !== undefined && source.snapshot !== null ? required("volume_content_source.snapshot.snapshot_id", source.snapshot.snapshotId ?? "") : "";
      const snapshot = sourceId !== "" ? await array.getSnapshot(v1.GetSnapshotRequest.create({ snapshotId: sourceId }), ctx) : undefined;

      const found = await existingLun(name, ctx);
      if (found !== undefined) {
        if (fits(found.sizeBytes ?? 0, range) && (found.sourceSnapshotId ?? "") === sourceId) return { volume: volumeOf(found) };
        throw new AlreadyExistsError(`a volume named ${quote(name)} already exists with another size or source`);
      }

      const block = (await array.getArrayInfo(v1.GetArrayInfoRequest.create(), ctx)).blockSizeBytes ?? 1;
      const floor = snapshot?.sizeBytes ?? 0;
      const wanted = Math.max(range.required > 0 ? range.required : range.limit > 0 ? Math.min(DEFAULT_VOLUME_BYTES, range.limit) : DEFAULT_VOLUME_BYTES, floor);
      const size = Math.ceil(wanted / block) * block;
      if (!fits(size, range)) {
        throw new OutOfRangeError(`capacity_range cannot be met: the volume would be ${size} bytes (${floor > 0 ? "the source snapshot's size, " : ""}rounded to the ${block}-byte block size)`);
      }
      if (snapshot === undefined) return { volume: volumeOf(await array.createLun(v1.CreateLunRequest.create({ name, sizeBytes: size }), ctx)) };
      let lun = await array.cloneSnapshot(v1.CloneSnapshotRequest.create({ snapshotId: sourceId, name }), ctx);
      if ((lun.sizeBytes ?? 0) < size) lun = await array.resizeLun(v1.ResizeLunRequest.create({ lunId: lun.lunId ?? "", sizeBytes: size }), ctx);
      return { volume: volumeOf(lun) };
    },

    deleteVolume: async (req, ctx) => {
      await array.deleteLun(v1.DeleteLunRequest.create({ lunId: required("volume_id", req.volumeId) }), ctx);
      return {};
    },

    listVolumes: async (req, ctx) => {
      const page = await array.listLuns(v1.ListLunsRequest.create({ maxEntries: req.maxEntries, startingToken: req.startingToken }), ctx);
      return { entries: (page.luns ?? []).map((l) => ({ volume: volumeOf(l) })), nextToken: page.nextToken ?? "" };
    },

    createSnapshot: async (req, ctx) => {
      const sourceVolumeId = required("source_volume_id", req.sourceVolumeId);
      const name = required("name", req.name);
      noParameters("parameters", req.parameters);
      const made = await array.createSnapshot(v1.CreateSnapshotRequest.create({ name, lunIds: [sourceVolumeId] }), ctx);
      const [snapshot] = made.snapshots ?? [];
      if (snapshot === undefined) throw new SanboxError("IO_ERROR", `CreateSnapshot of ${quote(sourceVolumeId)} returned no snapshot`);
      return { snapshot: snapshotOf(snapshot) };
    },

    deleteSnapshot: async (req, ctx) => {
      const snapshotId = required("snapshot_id", req.snapshotId);
      let snapshot: v1.ISnapshot;
      try {
        snapshot = await array.getSnapshot(v1.GetSnapshotRequest.create({ snapshotId }), ctx);
      } catch (e: unknown) {
        if (isNotFound(e)) return {};
        throw e;
      }
      const group = snapshot.groupSnapshotId ?? "";
      if (group !== "") throw new InvalidArgumentError(`snapshot ${snapshotId} is part of group snapshot ${group}; delete the group with DeleteVolumeGroupSnapshot`);
      await array.deleteSnapshot(v1.DeleteSnapshotRequest.create({ snapshotId }), ctx);
      return {};
    },

    listSnapshots: async (req, ctx) => {
      const page = await array.listSnapshots(
        v1.ListSnapshotsRequest.create({ maxEntries: req.maxEntries, startingToken: req.startingToken, lunId: req.sourceVolumeId, snapshotId: req.snapshotId }),
        ctx,
      );
      return { entries: (page.snapshots ?? []).map((s) => ({ snapshot: snapshotOf(s) })), nextToken: page.nextToken ?? "" };
    },
  };
}
