/**
 * The SnapshotMetadata stream, made from an ArrayService CBT stream
 * (GetChangedBlocks / GetAllocatedBlocks): CSI spec "Snapshot Metadata Service
 * RPCs", "Metadata Format" and "Special considerations for processing a
 * snapshot metadata gRPC stream".
 *
 * Invariants of every stream made here:
 *  - `block_metadata_type` and `volume_capacity_bytes` are the same in every
 *    message (the capacity is the first array message's; it never changes
 *    mid-stream).
 *  - Tuples ascend and never overlap, across messages too: the array's extents
 *    already do, coalescing only joins neighbours, splitting only cuts.
 *  - The first tuple ends after `starting_offset`: the array's first extent
 *    does, and in FIXED_LENGTH mode granules ending at or before it are
 *    skipped. A tuple straddling `starting_offset` is sent whole.
 *  - VARIABLE_LENGTH: adjacent extents (DATA beside ZERO, or two array
 *    messages) become one range, so a range never ends where the next begins.
 *    FIXED_LENGTH: every tuple is one CBT granule, `size_bytes` = granularity.
 *  - At most `maxResults` tuples per message; at least one message, so an
 *    empty answer still tells the capacity.
 * Memory is O(maxResults + one array message): tuples are batched as the
 * array streams them.
 */
import { csi } from "../../../src/rpc/csi-proto.js";
import type { v1 } from "../../../src/rpc/proto.js";

/** `sanbox array serve --csi-block-metadata`. */
export type BlockMetadataMode = "fixed" | "variable";

export const BLOCK_METADATA_MODES: readonly BlockMetadataMode[] = ["variable", "fixed"];

export interface Tuple {
  byteOffset: number;
  sizeBytes: number;
}

/** One message of either SnapshotMetadata stream (the two responses have the same fields). */
export interface BlockMetadataMessage {
  blockMetadataType: csi.BlockMetadataType;
  volumeCapacityBytes: number;
  blockMetadata: Tuple[];
}

export interface StreamOptions {
  mode: BlockMetadataMode;
  /** The CBT granularity: the FIXED_LENGTH tuple size. */
  granule: number;
  startingOffset: number;
  /** Tuples per message (> 0). */
  maxResults: number;
}

export function metadataType(mode: BlockMetadataMode): csi.BlockMetadataType {
  return mode === "fixed" ? csi.BlockMetadataType.FIXED_LENGTH : csi.BlockMetadataType.VARIABLE_LENGTH;
}

/**
 * The CSI stream for an array CBT stream that already honours `starting_offset`.
 * Tuples are made a whole array message at a time, in a plain loop (no
 * generator step per tuple: at 10k tuples that overhead was most of the cost).
 */
export async function* blockMetadataStream(source: AsyncIterable<v1.IBlockMetadataResponse>, o: StreamOptions): AsyncGenerator<BlockMetadataMessage> {
  let volumeCapacityBytes: number | undefined;
  const head = (): Omit<BlockMetadataMessage, "blockMetadata"> => ({ blockMetadataType: metadataType(o.mode), volumeCapacityBytes: volumeCapacityBytes ?? 0 });
  let batch: Tuple[] = [];
  const ready: Tuple[][] = [];
  let sent = false;
  // VARIABLE_LENGTH: the run that may still grow until the next one starts; it joins a batch only once final.
  let run: Tuple | undefined;
  // FIXED_LENGTH: the end of the last granule sent, so a granule two extents share is sent once.
  let fixedEnd = -1;
  const push = (t: Tuple): void => {
    batch.push(t);
    if (batch.length >= o.maxResults) {
      ready.push(batch);
      batch = [];
    }
  };
  for await (const message of source) {
    volumeCapacityBytes ??= message.volumeCapacityBytes ?? 0;
    for (const e of message.blockMetadata ?? []) {
      const offset = e.byteOffset ?? 0;
      const end = offset + (e.sizeBytes ?? 0);
      if (end <= offset) continue;
      if (o.mode === "fixed") {
        for (let g = Math.floor(offset / o.granule) * o.granule; g < end; g += o.granule) {
          if (g + o.granule > o.startingOffset && g >= fixedEnd) {
            push({ byteOffset: g, sizeBytes: o.granule });
            fixedEnd = g + o.granule;
          }
        }
      } else if (run !== undefined && run.byteOffset + run.sizeBytes === offset) {
        run.sizeBytes = end - run.byteOffset;
      } else {
        if (run !== undefined) push(run);
        run = { byteOffset: offset, sizeBytes: end - offset };
      }
    }
    for (const b of ready.splice(0)) {
      yield { ...head(), blockMetadata: b };
      sent = true;
    }
  }
  if (run !== undefined) push(run);
  for (const b of ready.splice(0)) {
    yield { ...head(), blockMetadata: b };
    sent = true;
  }
  if (batch.length > 0 || !sent) yield { ...head(), blockMetadata: batch };
}

/**
 * Frames a whole tuple list as a stream from `startingOffset` (the first tuple
 * ending after it), `maxResults` per message, at least one message. The
 * failpoints re-frame altered answers with it.
 */
export function* frameTuples(all: readonly Tuple[], head: Omit<BlockMetadataMessage, "blockMetadata">, startingOffset: number, maxResults: number): Generator<BlockMetadataMessage> {
  const from = all.findIndex((t) => t.byteOffset + t.sizeBytes > startingOffset);
  const rest = from < 0 ? [] : all.slice(from);
  if (rest.length === 0) yield { ...head, blockMetadata: [] };
  for (let i = 0; i < rest.length; i += maxResults) yield { ...head, blockMetadata: rest.slice(i, i + maxResults) };
}
