/**
 * The ArrayService (proto/sanbox/array/v1/array.proto) as a method table: one
 * row per RPC with its request and response codecs, unary or server-streaming.
 * The grpc-js definition, the server adapter, the typed client and the types
 * below all derive from this table (service.ts), so a new RPC is one row here
 * plus its implementation (simulator/array/service/array-service.ts). Row names
 * are the .proto's; the table must list every RPC the .proto declares
 * (test/e2e/470 compares it with what reflection serves).
 */
import { v1, SERVICE_NAME } from "./proto.js";
import { implement, serve, type Implementation, type RpcServerOptions, type RunningRpcServer } from "./server.js";
import { defineService, serverStreaming, unary, type Impl, type MethodKey, type Reply } from "./service.js";

export const METHODS = {
  getArrayInfo: unary("GetArrayInfo", v1.GetArrayInfoRequest, v1.ArrayInfo),
  getPoolStats: unary("GetPoolStats", v1.GetPoolStatsRequest, v1.PoolStats),
  createLun: unary("CreateLun", v1.CreateLunRequest, v1.Lun),
  getLun: unary("GetLun", v1.GetLunRequest, v1.Lun),
  listLuns: unary("ListLuns", v1.ListLunsRequest, v1.ListLunsResponse),
  resizeLun: unary("ResizeLun", v1.ResizeLunRequest, v1.Lun),
  deleteLun: unary("DeleteLun", v1.DeleteLunRequest, v1.DeleteLunResponse),
  createHost: unary("CreateHost", v1.CreateHostRequest, v1.Host),
  listHosts: unary("ListHosts", v1.ListHostsRequest, v1.ListHostsResponse),
  deleteHost: unary("DeleteHost", v1.DeleteHostRequest, v1.DeleteHostResponse),
  mapLun: unary("MapLun", v1.MapLunRequest, v1.MapLunResponse),
  unmapLun: unary("UnmapLun", v1.UnmapLunRequest, v1.UnmapLunResponse),
  createSnapshot: unary("CreateSnapshot", v1.CreateSnapshotRequest, v1.CreateSnapshotResponse),
  getSnapshot: unary("GetSnapshot", v1.GetSnapshotRequest, v1.Snapshot),
  listSnapshots: unary("ListSnapshots", v1.ListSnapshotsRequest, v1.ListSnapshotsResponse),
  deleteSnapshot: unary("DeleteSnapshot", v1.DeleteSnapshotRequest, v1.DeleteSnapshotResponse),
  getGroupSnapshot: unary("GetGroupSnapshot", v1.GetGroupSnapshotRequest, v1.GroupSnapshot),
  deleteGroupSnapshot: unary("DeleteGroupSnapshot", v1.DeleteGroupSnapshotRequest, v1.DeleteGroupSnapshotResponse),
  getChangedBlocks: serverStreaming("GetChangedBlocks", v1.GetChangedBlocksRequest, v1.BlockMetadataResponse),
  getAllocatedBlocks: serverStreaming("GetAllocatedBlocks", v1.GetAllocatedBlocksRequest, v1.BlockMetadataResponse),
  revertLun: unary("RevertLun", v1.RevertLunRequest, v1.Lun),
  cloneSnapshot: unary("CloneSnapshot", v1.CloneSnapshotRequest, v1.Lun),
  createExport: unary("CreateExport", v1.CreateExportRequest, v1.Export),
  listExports: unary("ListExports", v1.ListExportsRequest, v1.ListExportsResponse),
  deleteExport: unary("DeleteExport", v1.DeleteExportRequest, v1.DeleteExportResponse),
} as const;

export const ARRAY_SERVICE = defineService(SERVICE_NAME, METHODS, { protoFile: "sanbox/array/v1/array.proto" });

export type ArrayService = typeof ARRAY_SERVICE;

/** What an ArrayService implementation provides (service.ts `Impl`); the client type is ArrayClient (array-client.ts). */
export type ArrayServiceImpl = Impl<ArrayService>;

/** Response type of a client method, e.g. `ArrayReply<"getLun">`. */
export type ArrayReply<K extends MethodKey<ArrayService>> = Reply<ArrayService, K>;

/**
 * Serves ArrayService, and `others` on the same endpoint (the array daemon adds
 * its CSI services); the client is connectArray (array-client.ts).
 */
export function serveArray(impl: ArrayServiceImpl, options: RpcServerOptions, others: readonly Implementation[] = []): Promise<RunningRpcServer> {
  return serve([implement(ARRAY_SERVICE, impl), ...others], options);
}
