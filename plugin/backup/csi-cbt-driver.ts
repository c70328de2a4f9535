/**
 * `backup run --cbt csi`: the default driver (ArrayService over gRPC) with one
 * difference, its changed extents come from CSI SnapshotMetadata
 * GetMetadataDelta on the same endpoint instead of GetChangedBlocks. This is
 * the proof that the plugin needs nothing vendor-specific for CBT beyond CSI
 * (plus NBD for the data).
 *
 * CSI tuples carry no DATA/ZERO flag, so every range is DATA: the copy reads
 * it from the target, where a zeroed range reads as zeros, and the image is
 * the same. Resume after a transient error is the same resumableExtents loop
 * as GetChangedBlocks (CSI: "Special considerations for processing a snapshot
 * metadata gRPC stream"). A base the array no longer has (NOT_FOUND) or CBT
 * not enabled (FAILED_PRECONDITION, the spec's code for it) means a full read,
 * as CbtUnavailableError does for the default driver.
 */
import { CbtUnavailableError, SanboxError } from "../../src/errors.js";
import { connectArray, type ArrayClientOptions } from "../../src/rpc/array-client.js";
import { resumableExtents, type TypedExtent } from "../../src/rpc/block-stream.js";
import { csi } from "../../src/rpc/csi-proto.js";
import { CSI_SNAPSHOT_METADATA } from "../../src/rpc/csi-service-defs.js";
import { connect, type ServiceClient } from "../../src/rpc/client.js";
import { v1 } from "../../src/rpc/proto.js";
import type { Decoded } from "../../src/rpc/service.js";
import { GrpcArrayDriver } from "./grpc-array-driver.js";

type CsiMessage = Decoded<csi.IGetMetadataDeltaResponse>;
type ArrayMessage = Decoded<v1.IBlockMetadataResponse>;

/** CSI's message in the ArrayService shape resumableExtents reads: every tuple DATA. */
async function* asDataExtents(it: AsyncIterable<CsiMessage>): AsyncIterable<ArrayMessage> {
  for await (const m of it) {
    yield {
      blockMetadataType: m.blockMetadataType === csi.BlockMetadataType.FIXED_LENGTH ? v1.BlockMetadataType.FIXED_LENGTH : v1.BlockMetadataType.VARIABLE_LENGTH,
      volumeCapacityBytes: m.volumeCapacityBytes,
      blockMetadata: m.blockMetadata.map((b) => ({ byteOffset: b.byteOffset, sizeBytes: b.sizeBytes, type: v1.ExtentType.DATA })),
    };
  }
}

export class CsiCbtArrayDriver extends GrpcArrayDriver {
  private readonly meta: ServiceClient<typeof CSI_SNAPSHOT_METADATA>;

  constructor(
    opts: ArrayClientOptions,
    private readonly secrets: Record<string, string> = {},
  ) {
    super(connectArray(opts));
    this.meta = connect(CSI_SNAPSHOT_METADATA, opts);
  }

  override async *changedExtents(baseSnapshotId: string, targetSnapshotId: string): AsyncIterable<TypedExtent> {
    try {
      yield* resumableExtents((s, o) => asDataExtents(this.meta.getMetadataDelta({ baseSnapshotId, targetSnapshotId, startingOffset: s, maxResults: 0, secrets: this.secrets }, o)));
    } catch (e: unknown) {
      if (e instanceof SanboxError && (e.code === "NOT_FOUND" || e.code === "FAILED_PRECONDITION" || e.code === "CBT_UNAVAILABLE")) throw new CbtUnavailableError(`GetMetadataDelta(${baseSnapshotId} → ${targetSnapshotId}): ${e.message}`);
      throw e;
    }
  }

  override close(): void {
    this.meta.close();
    super.close();
  }
}
