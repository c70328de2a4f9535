/**
 * ArrayService objects as CSI messages, and the argument checks every CSI
 * service shares. The mapping (docs/contract.md "CSI"): a volume is a LUN
 * (volume_id = lun_id, capacity = LUN size), a snapshot is a snapshot
 * (source_volume_id = its LUN), a group snapshot is a group snapshot.
 * Every snapshot the array reports is cut and usable at once, so ready_to_use
 * is what the array says (always true today).
 */
import { InvalidArgumentError, quote } from "../../../src/errors.js";
import type { csi, protobuf } from "../../../src/rpc/csi-proto.js";
import type { v1 } from "../../../src/rpc/proto.js";
import { lunExportName } from "../exports/export-names.js";

/** CSI "Missing required field": INVALID_ARGUMENT naming the field. */
export function required(field: string, value: string): string {
  if (value === "") throw new InvalidArgumentError(`${field} is required`);
  return value;
}

/** This plugin takes no `parameters`: an unknown key is an invalid field, not something to ignore. */
export function noParameters(field: string, parameters: Readonly<Record<string, string>>): void {
  const keys = Object.keys(parameters);
  if (keys.length > 0) throw new InvalidArgumentError(`${field}: this plugin takes none, got ${keys.map((k) => quote(k)).join(", ")}`);
}

/** An RFC 3339 time (the array's creation_time) as a protobuf Timestamp. */
export function timestamp(iso: string | null | undefined): protobuf.ITimestamp {
  const ms = Date.parse(iso ?? "");
  if (!Number.isFinite(ms)) return { seconds: 0, nanos: 0 };
  return { seconds: Math.floor(ms / 1000), nanos: (((ms % 1000) + 1000) % 1000) * 1_000_000 };
}

export function volumeOf(l: v1.ILun): csi.IVolume {
  const name = l.name ?? "";
  const source = l.sourceSnapshotId ?? "";
  return {
    capacityBytes: l.sizeBytes ?? 0,
    volumeId: l.lunId ?? "",
    // Opaque to a CO; what a node needs to reach the LUN over NBD.
    volumeContext: { name, naa: l.naa ?? "", blockSizeBytes: String(l.blockSizeBytes ?? 0), nbdExport: lunExportName(name) },
    ...(source !== "" ? { contentSource: { snapshot: { snapshotId: source } } } : {}),
  };
}

export function snapshotOf(s: v1.ISnapshot): csi.ISnapshot {
  return {
    sizeBytes: s.sizeBytes ?? 0,
    snapshotId: s.snapshotId ?? "",
    sourceVolumeId: s.lunId ?? "",
    creationTime: timestamp(s.creationTime),
    readyToUse: s.readyToUse ?? false,
    groupSnapshotId: s.groupSnapshotId ?? "",
  };
}

export function groupSnapshotOf(g: v1.IGroupSnapshot): csi.IVolumeGroupSnapshot {
  const snapshots = (g.snapshots ?? []).map(snapshotOf);
  return {
    groupSnapshotId: g.groupSnapshotId ?? "",
    snapshots,
    creationTime: timestamp(g.creationTime),
    readyToUse: (g.readyToUse ?? false) && snapshots.every((s) => s.readyToUse === true),
  };
}
