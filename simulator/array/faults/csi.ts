/**
 * TEST-ONLY faults on the array's CSI services, each breaking one rule of CSI
 * (spec "Snapshot Metadata Service RPCs", "Group Controller Service RPCs";
 * docs/conformance.md "Failpoints" names the check that catches each):
 *
 *   csi-delta-overlap          a GetMetadataDelta message's first tuple starts
 *                              at the previous message's last tuple (overlap).
 *   csi-delta-before-start     the first tuple ends at or before starting_offset.
 *   csi-capacity-changes       a last message whose volume_capacity_bytes differs.
 *   csi-max-results-exceeded   max_results + 1 tuples per message.
 *   csi-negative-offset-code   a negative starting_offset is INVALID_ARGUMENT,
 *                              not the spec's OUT_OF_RANGE (both RPCs).
 *   csi-group-not-idempotent   CreateVolumeGroupSnapshot cuts a new group on
 *                              every call, whatever the name.
 *   csi-group-delete-not-found DeleteVolumeGroupSnapshot of a gone group is
 *                              NOT_FOUND instead of OK.
 *   csi-delta-drop-extent      the middle changed tuple is left out (only
 *                              apply-delta can tell).
 *   csi-fixed-unequal          in FIXED_LENGTH mode the first tuple is cut in
 *                              two halves: sizes differ, data is still covered.
 *
 * The whole-answer faults ask the real service for the stream from offset 0
 * (its validation and NOT_FOUND are the real ones), alter the tuple list, and
 * frame it again from the request's starting_offset and max_results.
 */
import { randomBytes } from "node:crypto";
import { InvalidArgumentError, NotFoundError, OutOfRangeError, SanboxError } from "../../../src/errors.js";
import { csi } from "../../../src/rpc/csi-proto.js";
import type { CsiServices } from "../../../src/rpc/csi-service-defs.js";
import type { CallContext } from "../../../src/rpc/service.js";
import { frameTuples, type BlockMetadataMessage, type Tuple } from "../csi/block-metadata.js";
import { checkMaxResults } from "../service/array-service.js";
import { overlay } from "./filter.js";

export type CsiFilter = (next: CsiServices) => CsiServices;

type DeltaRequest = csi.GetMetadataDeltaRequest;
type DeltaMessage = csi.IGetMetadataDeltaResponse;

interface Whole {
  head: Omit<BlockMetadataMessage, "blockMetadata">;
  tuples: Tuple[];
}

function tuplesOf(m: DeltaMessage): Tuple[] {
  return (m.blockMetadata ?? []).map((t) => ({ byteOffset: t.byteOffset ?? 0, sizeBytes: t.sizeBytes ?? 0 }));
}

async function wholeDelta(next: CsiServices, req: DeltaRequest, ctx: CallContext): Promise<Whole> {
  const fromZero = csi.GetMetadataDeltaRequest.create({ baseSnapshotId: req.baseSnapshotId, targetSnapshotId: req.targetSnapshotId, startingOffset: 0, maxResults: 0 });
  const whole: Whole = { head: { blockMetadataType: csi.BlockMetadataType.UNKNOWN, volumeCapacityBytes: 0 }, tuples: [] };
  for await (const m of next.snapshotMetadata.getMetadataDelta(fromZero, ctx)) {
    whole.head = { blockMetadataType: m.blockMetadataType ?? csi.BlockMetadataType.UNKNOWN, volumeCapacityBytes: m.volumeCapacityBytes ?? 0 };
    whole.tuples.push(...tuplesOf(m));
  }
  if (req.startingOffset < 0 || req.startingOffset > whole.head.volumeCapacityBytes) {
    throw new OutOfRangeError(`starting_offset ${req.startingOffset} is outside the volume (0..${whole.head.volumeCapacityBytes})`);
  }
  return whole;
}

/** The real delta altered by `alter`, framed from the request's offset with `perMessage(max)` tuples per message. */
function alteredDelta(next: CsiServices, alter: (w: Whole, req: DeltaRequest) => Whole, perMessage: (max: number, req: DeltaRequest) => number = (m) => m): CsiServices {
  return overlay(next, {
    snapshotMetadata: overlay(next.snapshotMetadata, {
      async *getMetadataDelta(req, ctx) {
        const max = checkMaxResults(req.maxResults);
        const w = alter(await wholeDelta(next, req, ctx), req);
        yield* frameTuples(w.tuples, w.head, req.startingOffset, perMessage(max, req));
      },
    }),
  });
}

export const csiDeltaOverlap: CsiFilter = (next) =>
  overlay(next, {
    snapshotMetadata: overlay(next.snapshotMetadata, {
      async *getMetadataDelta(req, ctx) {
        let previous: Tuple | undefined;
        for await (const m of next.snapshotMetadata.getMetadataDelta(req, ctx)) {
          const tuples = tuplesOf(m);
          const [first] = tuples;
          const last = tuples[tuples.length - 1];
          if (previous !== undefined && first !== undefined) {
            tuples[0] = { byteOffset: previous.byteOffset, sizeBytes: first.byteOffset + first.sizeBytes - previous.byteOffset };
          }
          previous = last ?? previous;
          yield { ...m, blockMetadata: tuples };
        }
      },
    }),
  });

export const csiDeltaBeforeStart: CsiFilter = (next) =>
  overlay(next, {
    snapshotMetadata: overlay(next.snapshotMetadata, {
      async *getMetadataDelta(req, ctx) {
        const max = checkMaxResults(req.maxResults);
        const w = await wholeDelta(next, req, ctx);
        const from = w.tuples.findIndex((t) => t.byteOffset + t.sizeBytes > req.startingOffset);
        const start = from < 0 ? w.tuples.length : from;
        // The last tuple ending at or before the offset leads; framed from 0 so that it stays.
        yield* frameTuples(w.tuples.slice(Math.max(0, start - 1)), w.head, 0, max);
      },
    }),
  });

/** How much the capacity of the extra last message differs. */
const CAPACITY_SKEW_BYTES = 1024 * 1024;

export const csiCapacityChanges: CsiFilter = (next) =>
  overlay(next, {
    snapshotMetadata: overlay(next.snapshotMetadata, {
      async *getMetadataDelta(req, ctx) {
        let last: DeltaMessage | undefined;
        for await (const m of next.snapshotMetadata.getMetadataDelta(req, ctx)) {
          last = m;
          yield m;
        }
        if (last !== undefined) yield { blockMetadataType: last.blockMetadataType ?? csi.BlockMetadataType.UNKNOWN, volumeCapacityBytes: (last.volumeCapacityBytes ?? 0) + CAPACITY_SKEW_BYTES, blockMetadata: [] };
      },
    }),
  });

export const csiMaxResultsExceeded: CsiFilter = (next) => alteredDelta(next, (w) => w, (max, req) => (req.maxResults > 0 ? max + 1 : max));

async function* refuseNegative<T>(offset: number, stream: () => AsyncIterable<T>): AsyncGenerator<T> {
  if (offset < 0) throw new InvalidArgumentError(`failpoint csi-negative-offset-code: starting_offset ${offset} is negative`);
  yield* stream();
}

export const csiNegativeOffsetCode: CsiFilter = (next) =>
  overlay(next, {
    snapshotMetadata: overlay(next.snapshotMetadata, {
      getMetadataDelta: (req, ctx) => refuseNegative(req.startingOffset, () => next.snapshotMetadata.getMetadataDelta(req, ctx)),
      getMetadataAllocated: (req, ctx) => refuseNegative(req.startingOffset, () => next.snapshotMetadata.getMetadataAllocated(req, ctx)),
    }),
  });

export const csiGroupNotIdempotent: CsiFilter = (next) =>
  overlay(next, {
    groupController: overlay(next.groupController, {
      createVolumeGroupSnapshot: (req, ctx) =>
        next.groupController.createVolumeGroupSnapshot(csi.CreateVolumeGroupSnapshotRequest.create({ ...req, name: `${req.name}.${randomBytes(4).toString("hex")}` }), ctx),
    }),
  });

export const csiGroupDeleteNotFound: CsiFilter = (next) =>
  overlay(next, {
    groupController: overlay(next.groupController, {
      deleteVolumeGroupSnapshot: async (req, ctx) => {
        try {
          await next.groupController.getVolumeGroupSnapshot(csi.GetVolumeGroupSnapshotRequest.create({ groupSnapshotId: req.groupSnapshotId }), ctx);
        } catch (e: unknown) {
          if (e instanceof SanboxError && e.code === "NOT_FOUND") throw new NotFoundError(`failpoint csi-group-delete-not-found: ${e.message}`);
          throw e;
        }
        return next.groupController.deleteVolumeGroupSnapshot(req, ctx);
      },
    }),
  });

export const csiDeltaDropExtent: CsiFilter = (next) =>
  alteredDelta(next, (w) => ({ ...w, tuples: w.tuples.filter((_, i) => i !== Math.floor(w.tuples.length / 2)) }));

export const csiFixedUnequal: CsiFilter = (next) =>
  alteredDelta(next, (w) => {
    const [first, ...rest] = w.tuples;
    if (w.head.blockMetadataType !== csi.BlockMetadataType.FIXED_LENGTH || first === undefined || first.sizeBytes < 2) return w;
    const half = Math.floor(first.sizeBytes / 2);
    return { ...w, tuples: [{ byteOffset: first.byteOffset, sizeBytes: half }, { byteOffset: first.byteOffset + half, sizeBytes: first.sizeBytes - half }, ...rest] };
  });
