/**
 * TEST-ONLY faults on GetChangedBlocks, each breaking one rule of the CBT
 * contract (docs/contract.md "Changed-block tracking"):
 *
 *   cbt-drop-zero               "TRIM, WRITE_ZEROES ... count as changes": ZERO
 *                               extents are left out, so an incremental backup
 *                               keeps stale data where the guest discarded it.
 *   cbt-off-by-one              "CBT may over-report, never under-report": the
 *                               first extent is reported one CBT block further
 *                               on, so its first block is never copied.
 *   cbt-ignore-starting-offset  stream guarantee 4 (resume): the stream starts
 *                               at offset 0 whatever `starting_offset` says, so
 *                               a resumed stream repeats what it already sent.
 *
 * Each filter asks the real service for the whole list (the same request from
 * offset 0, so every validation and NOT_FOUND is the real one), alters that
 * list, and frames it again with the real framing (`frame`): messages keep the
 * real `max_results` split and an out-of-range `starting_offset` is still
 * OUT_OF_RANGE. Only the extents change. Stacked, they apply inner first.
 */
import { IoError } from "../../../src/errors.js";
import type { ArrayServiceImpl } from "../../../src/rpc/array-service-def.js";
import { v1 } from "../../../src/rpc/proto.js";
import { checkMaxResults, frame, type TypedExtent } from "../service/array-service.js";
import { overlay, type CallContextOf, type RequestOf, type ServiceFilter } from "./filter.js";

type ChangedBlocksRequest = RequestOf<"getChangedBlocks">;

/** A whole changed-block answer: the volume size and every extent, ascending. */
interface Changes {
  size: number;
  extents: TypedExtent[];
}

async function wholeAnswer(next: ArrayServiceImpl, req: ChangedBlocksRequest, ctx: CallContextOf): Promise<Changes> {
  const fromZero = v1.GetChangedBlocksRequest.create({
    baseSnapshotId: req.baseSnapshotId,
    targetSnapshotId: req.targetSnapshotId,
    lunId: req.lunId,
    startingOffset: 0,
    maxResults: req.maxResults,
  });
  const changes: Changes = { size: 0, extents: [] };
  for await (const message of next.getChangedBlocks(fromZero, ctx)) {
    changes.size = message.volumeCapacityBytes ?? 0;
    for (const extent of message.blockMetadata ?? []) {
      changes.extents.push({ offset: extent.byteOffset ?? 0, length: extent.sizeBytes ?? 0, flag: extent.type ?? v1.ExtentType.EXTENT_TYPE_UNSPECIFIED });
    }
  }
  return changes;
}

/**
 * The real answer altered by `alter`, framed as the real service frames it.
 * `resumeAt` is where the altered stream resumes (the request's offset unless
 * the fault ignores it); the request's own offset is range-checked either way.
 */
async function* alteredStream(
  next: ArrayServiceImpl,
  req: ChangedBlocksRequest,
  ctx: CallContextOf,
  alter: (changes: Changes) => Changes | Promise<Changes>,
  resumeAt: number = req.startingOffset,
): AsyncGenerator<v1.IBlockMetadataResponse> {
  const changes = await alter(await wholeAnswer(next, req, ctx));
  const maxResults = checkMaxResults(req.maxResults);
  frame([], changes.size, req.startingOffset, maxResults).next();
  yield* frame(changes.extents, changes.size, resumeAt, maxResults);
}

export const cbtDropZero: ServiceFilter = (next) =>
  overlay(next, {
    getChangedBlocks: (req, ctx) => alteredStream(next, req, ctx, (changes) => ({ ...changes, extents: changes.extents.filter((e) => e.flag !== v1.ExtentType.ZERO) })),
  });

export const cbtOffByOne: ServiceFilter = (next) =>
  overlay(next, {
    getChangedBlocks: (req, ctx) =>
      alteredStream(next, req, ctx, async (changes) => {
        const info = await next.getArrayInfo(v1.GetArrayInfoRequest.create(), ctx);
        const block = info.capabilities?.cbtGranularityBytes ?? 0;
        if (block <= 0) throw new IoError("cbt-off-by-one: the array reports no CBT granularity");
        return { ...changes, extents: shiftFirst(changes.extents, block, changes.size) };
      }),
  });

export const cbtIgnoreStartingOffset: ServiceFilter = (next) =>
  overlay(next, {
    getChangedBlocks: (req, ctx) => alteredStream(next, req, ctx, (changes) => changes, 0),
  });

/** The first extent reported `block` bytes further on, clipped to the volume (dropped if nothing is left). */
export function shiftFirst<T extends { offset: number; length: number }>(extents: readonly T[], block: number, size: number): T[] {
  const [first, ...rest] = extents;
  if (first === undefined) return [];
  const offset = first.offset + block;
  const length = Math.min(first.length, size - offset);
  return length > 0 ? [{ ...first, offset, length }, ...rest] : rest;
}
