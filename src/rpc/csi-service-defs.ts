/**
 * CSI's Identity, Controller, GroupController and SnapshotMetadata services
 * (proto/csi/v1/csi.proto) as method tables, one per service, for the generic
 * layer (service.ts: definitions, server adapter, typed client). Only the RPCs
 * of our subset appear: the array serves all four beside ArrayService on one
 * endpoint, as CSI asks of a plugin, and `sanbox conformance --csi` calls any
 * driver through the clients below. The rows must match the .proto's RPCs
 * one to one (names as the .proto spells them).
 */
import { connect, type ConnectOptions, type ServiceClient } from "./client.js";
import { csi } from "./csi-proto.js";
import { implement, type Implementation } from "./server.js";
import { defineService, serverStreaming, unary, type Impl } from "./service.js";

const PROTO_FILE = "csi/v1/csi.proto";

export const CSI_IDENTITY = defineService(
  "csi.v1.Identity",
  {
    getPluginInfo: unary("GetPluginInfo", csi.GetPluginInfoRequest, csi.GetPluginInfoResponse),
    getPluginCapabilities: unary("GetPluginCapabilities", csi.GetPluginCapabilitiesRequest, csi.GetPluginCapabilitiesResponse),
    probe: unary("Probe", csi.ProbeRequest, csi.ProbeResponse),
  },
  { protoFile: PROTO_FILE },
);

export const CSI_CONTROLLER = defineService(
  "csi.v1.Controller",
  {
    createVolume: unary("CreateVolume", csi.CreateVolumeRequest, csi.CreateVolumeResponse),
    deleteVolume: unary("DeleteVolume", csi.DeleteVolumeRequest, csi.DeleteVolumeResponse),
    listVolumes: unary("ListVolumes", csi.ListVolumesRequest, csi.ListVolumesResponse),
    controllerGetCapabilities: unary("ControllerGetCapabilities", csi.ControllerGetCapabilitiesRequest, csi.ControllerGetCapabilitiesResponse),
    createSnapshot: unary("CreateSnapshot", csi.CreateSnapshotRequest, csi.CreateSnapshotResponse),
    deleteSnapshot: unary("DeleteSnapshot", csi.DeleteSnapshotRequest, csi.DeleteSnapshotResponse),
    listSnapshots: unary("ListSnapshots", csi.ListSnapshotsRequest, csi.ListSnapshotsResponse),
  },
  { protoFile: PROTO_FILE },
);

export const CSI_GROUP_CONTROLLER = defineService(
  "csi.v1.GroupController",
  {
    groupControllerGetCapabilities: unary("GroupControllerGetCapabilities", csi.GroupControllerGetCapabilitiesRequest, csi.GroupControllerGetCapabilitiesResponse),
    createVolumeGroupSnapshot: unary("CreateVolumeGroupSnapshot", csi.CreateVolumeGroupSnapshotRequest, csi.CreateVolumeGroupSnapshotResponse),
    deleteVolumeGroupSnapshot: unary("DeleteVolumeGroupSnapshot", csi.DeleteVolumeGroupSnapshotRequest, csi.DeleteVolumeGroupSnapshotResponse),
    getVolumeGroupSnapshot: unary("GetVolumeGroupSnapshot", csi.GetVolumeGroupSnapshotRequest, csi.GetVolumeGroupSnapshotResponse),
  },
  { protoFile: PROTO_FILE },
);

export const CSI_SNAPSHOT_METADATA = defineService(
  "csi.v1.SnapshotMetadata",
  {
    getMetadataAllocated: serverStreaming("GetMetadataAllocated", csi.GetMetadataAllocatedRequest, csi.GetMetadataAllocatedResponse),
    getMetadataDelta: serverStreaming("GetMetadataDelta", csi.GetMetadataDeltaRequest, csi.GetMetadataDeltaResponse),
  },
  { protoFile: PROTO_FILE },
);

export type CsiIdentityImpl = Impl<typeof CSI_IDENTITY>;
export type CsiControllerImpl = Impl<typeof CSI_CONTROLLER>;
export type CsiGroupControllerImpl = Impl<typeof CSI_GROUP_CONTROLLER>;
export type CsiSnapshotMetadataImpl = Impl<typeof CSI_SNAPSHOT_METADATA>;

/** What a CSI plugin implements: one object per service. */
export interface CsiServices {
  readonly identity: CsiIdentityImpl;
  readonly controller: CsiControllerImpl;
  readonly groupController: CsiGroupControllerImpl;
  readonly snapshotMetadata: CsiSnapshotMetadataImpl;
}

/** The four services as `serve` takes them, to share one endpoint (and its reflection) with others. */
export function csiImplementations(services: CsiServices): Implementation[] {
  return [
    implement(CSI_IDENTITY, services.identity),
    implement(CSI_CONTROLLER, services.controller),
    implement(CSI_GROUP_CONTROLLER, services.groupController),
    implement(CSI_SNAPSHOT_METADATA, services.snapshotMetadata),
  ];
}

/** One client per CSI service, all on the same endpoint (CSI: one plugin socket). */
export interface CsiClients {
  readonly identity: ServiceClient<typeof CSI_IDENTITY>;
  readonly controller: ServiceClient<typeof CSI_CONTROLLER>;
  readonly groupController: ServiceClient<typeof CSI_GROUP_CONTROLLER>;
  readonly snapshotMetadata: ServiceClient<typeof CSI_SNAPSHOT_METADATA>;
}

/** Connects lazily to a CSI endpoint; `close()` each client (or all with closeCsi) when done. */
export function connectCsi(options: ConnectOptions): CsiClients {
  return {
    identity: connect(CSI_IDENTITY, options),
    controller: connect(CSI_CONTROLLER, options),
    groupController: connect(CSI_GROUP_CONTROLLER, options),
    snapshotMetadata: connect(CSI_SNAPSHOT_METADATA, options),
  };
}

export function closeCsi(clients: CsiClients): void {
  clients.identity.close();
  clients.controller.close();
  clients.groupController.close();
  clients.snapshotMetadata.close();
}
