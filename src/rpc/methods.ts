/**
 * The ArrayService method table: one row per RPC with its request and response
 * codecs and whether the response streams. The grpc-js service definition, the
 * server adapter and the typed client are all derived from this one table, so a
 * new RPC is one row here plus its implementation.
 */
import type { Writer } from "protobufjs";
import { v1 } from "./proto.js";

export interface Codec<T, I> {
  encode(message: I): Writer;
  decode(bytes: Uint8Array): T;
}

export interface MethodSpec<Req, IReq, Res, IRes, S extends boolean> {
  readonly name: string;
  readonly request: Codec<Req, IReq>;
  readonly response: Codec<Res, IRes>;
  readonly stream: S;
}

function unary<Req, IReq, Res, IRes>(name: string, request: Codec<Req, IReq>, response: Codec<Res, IRes>): MethodSpec<Req, IReq, Res, IRes, false> {
  return { name, request, response, stream: false };
}
function streaming<Req, IReq, Res, IRes>(name: string, request: Codec<Req, IReq>, response: Codec<Res, IRes>): MethodSpec<Req, IReq, Res, IRes, true> {
  return { name, request, response, stream: true };
}

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
  getChangedBlocks: streaming("GetChangedBlocks", v1.GetChangedBlocksRequest, v1.BlockMetadataResponse),
  getAllocatedBlocks: streaming("GetAllocatedBlocks", v1.GetAllocatedBlocksRequest, v1.BlockMetadataResponse),
  revertLun: unary("RevertLun", v1.RevertLunRequest, v1.Lun),
  cloneSnapshot: unary("CloneSnapshot", v1.CloneSnapshotRequest, v1.Lun),
  createExport: unary("CreateExport", v1.CreateExportRequest, v1.Export),
  listExports: unary("ListExports", v1.ListExportsRequest, v1.ListExportsResponse),
  deleteExport: unary("DeleteExport", v1.DeleteExportRequest, v1.DeleteExportResponse),
} as const;

export type Methods = typeof METHODS;
export type MethodName = keyof Methods;

/** Who is calling, as far as the server knows (after the bearer-token check). */
export interface CallContext {
  readonly peer: string;
  readonly signal: AbortSignal;
}

/**
 * What an ArrayService implementation provides: unary calls get the decoded
 * request (every field present with its proto3 default) and return a response
 * object; streaming calls return an async iterable of response messages.
 * Throw SanboxErrors; src/rpc/status.ts maps them.
 */
export type ArrayServiceImpl = {
  [K in MethodName]: Methods[K] extends MethodSpec<infer Req, infer _IReq, infer _Res, infer IRes, infer S>
    ? S extends true
      ? (req: Req, ctx: CallContext) => AsyncIterable<IRes>
      : (req: Req, ctx: CallContext) => Promise<IRes>
    : never;
};

/**
 * A decoded message as the client sees it: every scalar and repeated field is
 * present (proto3 defaults), nested messages may be absent. (pbts types nested
 * and repeated message fields with the optional `I…` interfaces; this restores
 * what decode guarantees. `$unknowns`, protobufjs' bag of unknown fields, is left out.)
 */
export type Decoded<T> = { [K in Exclude<keyof T, "$unknowns">]-?: DecodedField<NonNullable<T[K]>> };
type DecodedField<V> = V extends Uint8Array ? Uint8Array : V extends readonly (infer U)[] ? DecodedElem<U>[] : V extends object ? Decoded<V> | undefined : V;
type DecodedElem<U> = U extends Uint8Array ? Uint8Array : U extends object ? Decoded<U> : U;

/** What a client offers: requests are plain objects, responses decoded messages. */
export type ArrayApi = {
  [K in MethodName]: Methods[K] extends MethodSpec<infer _Req, infer IReq, infer _Res, infer IRes, infer S>
    ? S extends true
      ? (req: IReq, opts?: CallOptions) => AsyncIterable<Decoded<IRes>>
      : (req: IReq, opts?: CallOptions) => Promise<Decoded<IRes>>
    : never;
};

/** Response type of a client method, e.g. `Reply<"getLun">`. */
export type Reply<K extends MethodName> = Methods[K] extends MethodSpec<infer _Req, infer _IReq, infer _Res, infer IRes, infer _S> ? Decoded<IRes> : never;

export interface CallOptions {
  signal?: AbortSignal;
  /** Milliseconds until the call is cancelled with TIMEOUT. */
  timeoutMs?: number;
}
