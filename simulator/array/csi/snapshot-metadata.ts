/**
 * CSI SnapshotMetadata (spec "Snapshot Metadata Service RPCs") over the
 * array's CBT: GetMetadataAllocated is GetAllocatedBlocks of a snapshot,
 * GetMetadataDelta is GetChangedBlocks between two snapshots of one volume
 * (DATA and ZERO changes alike: CSI has no flag, both must be copied). The
 * stream rules are block-metadata.ts'; this file checks arguments and maps
 * errors to the spec's tables ("GetMetadataAllocated Errors",
 * "GetMetadataDelta Errors"):
 *
 *   missing id, negative max_results, base of another volume  INVALID_ARGUMENT
 *   unknown snapshot (base or target)                          NOT_FOUND
 *   starting_offset < 0 or > the volume's capacity             OUT_OF_RANGE
 *   no CBT between the two (another lineage, block size)       FAILED_PRECONDITION
 *
 * A deleted base is still a base where the array keeps its trace
 * (GetArrayInfo cbt_from_deleted_base, the local store); where it cannot (RBD)
 * the base no longer exists for the caller: NOT_FOUND, "Invalid
 * base_snapshot_id", rather than the array's CBT_UNAVAILABLE.
 */
import { InvalidArgumentError, NotFoundError, OutOfRangeError, SanboxError } from "../../../src/errors.js";
import type { ArrayServiceImpl } from "../../../src/rpc/array-service-def.js";
import type { CsiSnapshotMetadataImpl } from "../../../src/rpc/csi-service-defs.js";
import type { CallContext } from "../../../src/rpc/service.js";
import { v1 } from "../../../src/rpc/proto.js";
import { checkMaxResults } from "../service/array-service.js";
import { blockMetadataStream, type BlockMetadataMode, type StreamOptions } from "./block-metadata.js";
import { required } from "./views.js";

function codeOf(e: unknown): string | undefined {
  return e instanceof SanboxError ? e.code : undefined;
}

export function csiSnapshotMetadata(array: ArrayServiceImpl, mode: BlockMetadataMode): CsiSnapshotMetadataImpl {
  const options = async (startingOffset: number, maxResults: number, ctx: CallContext): Promise<StreamOptions> => {
    // Negative offsets are the spec's OUT_OF_RANGE, before any lookup (the array would say so too, after it).
    if (!Number.isSafeInteger(startingOffset) || startingOffset < 0) throw new OutOfRangeError(`starting_offset must be >= 0, got ${startingOffset}`);
    const perMessage = checkMaxResults(maxResults);
    const info = await array.getArrayInfo(v1.GetArrayInfoRequest.create(), ctx);
    return { mode, granule: info.capabilities?.cbtGranularityBytes ?? info.blockSizeBytes ?? 1, startingOffset, maxResults: perMessage };
  };

  const snapshot = (snapshotId: string, ctx: CallContext): Promise<v1.ISnapshot> => array.getSnapshot(v1.GetSnapshotRequest.create({ snapshotId }), ctx);

  return {
    async *getMetadataAllocated(req, ctx) {
      const snapshotId = required("snapshot_id", req.snapshotId);
      const o = await options(req.startingOffset, req.maxResults, ctx);
      const s = await snapshot(snapshotId, ctx);
      const source = array.getAllocatedBlocks(v1.GetAllocatedBlocksRequest.create({ snapshotId, lunId: s.lunId ?? "", startingOffset: o.startingOffset }), ctx);
      yield* blockMetadataStream(source, o);
    },

    async *getMetadataDelta(req, ctx) {
      const baseSnapshotId = required("base_snapshot_id", req.baseSnapshotId);
      const targetSnapshotId = required("target_snapshot_id", req.targetSnapshotId);
      const o = await options(req.startingOffset, req.maxResults, ctx);
      const target = await snapshot(targetSnapshotId, ctx);
      let base: v1.ISnapshot | undefined;
      try {
        base = await snapshot(baseSnapshotId, ctx);
      } catch (e: unknown) {
        if (codeOf(e) !== "NOT_FOUND") throw e;
      }
      if (base !== undefined && base.lunId !== target.lunId) {
        throw new InvalidArgumentError(`base snapshot ${baseSnapshotId} is of volume ${base.lunId ?? ""}, target snapshot ${targetSnapshotId} of volume ${target.lunId ?? ""}; both must be of one volume`);
      }
      const source = array.getChangedBlocks(
        v1.GetChangedBlocksRequest.create({ baseSnapshotId, targetSnapshotId, lunId: target.lunId ?? "", startingOffset: o.startingOffset }),
        ctx,
      );
      try {
        yield* blockMetadataStream(source, o);
      } catch (e: unknown) {
        // Gone (deleted) and the array cannot diff from its trace: for the caller the base does not exist.
        if (base === undefined && codeOf(e) === "CBT_UNAVAILABLE") throw new NotFoundError(`base snapshot ${baseSnapshotId} was deleted and this array keeps no changed-block trace of it: ${e instanceof Error ? e.message : ""}`);
        throw e;
      }
    },
  };
}
