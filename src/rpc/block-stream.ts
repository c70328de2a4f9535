/**
 * Reading a CBT stream the way CSI intends: extents as one flat async iterable,
 * and when the stream breaks with a transient error (UNAVAILABLE, TIMEOUT,
 * CONNECTION_CLOSED), re-issue the request with `starting_offset` = the end of
 * the last extent received. The first extent of a resumed stream may start
 * before that point (CSI allows it); it is clipped, so the caller sees every
 * byte range exactly once, ascending and without overlap.
 */
import { SanboxError } from "../errors.js";
import type { FlaggedExtent } from "../extents/flagged.js";
import type { CallOptions, Decoded } from "./service.js";
import { v1 } from "./proto.js";

/** A CBT or allocation extent. `flag` DATA: read it from the target; ZERO: the target reads as zeros there. */
export type TypedExtent = FlaggedExtent<"DATA" | "ZERO">;

export type BlockStreamCall = (startingOffset: number, opts?: CallOptions) => AsyncIterable<Decoded<v1.IBlockMetadataResponse>>;

const TRANSIENT = new Set(["UNAVAILABLE", "TIMEOUT", "CONNECTION_CLOSED"]);

export interface ResumeOptions extends CallOptions {
  /** Resumptions allowed after transient errors (default 5). */
  retries?: number;
  /** Called with the volume capacity from the first message. */
  onCapacity?: (bytes: number) => void;
}

/**
 *   for await (const e of resumableExtents((s, o) => array.getChangedBlocks({ baseSnapshotId, targetSnapshotId, startingOffset: s }, o))) …
 */
export async function* resumableExtents(call: BlockStreamCall, opts: ResumeOptions = {}): AsyncIterable<TypedExtent> {
  let pos = 0;
  let retries = opts.retries ?? 5;
  let told = false;
  for (;;) {
    try {
      for await (const m of call(pos, opts)) {
        if (!told) {
          opts.onCapacity?.(m.volumeCapacityBytes);
          told = true;
        }
        for (const b of m.blockMetadata) {
          const end = b.byteOffset + b.sizeBytes;
          if (end <= pos) continue;
          const start = Math.max(b.byteOffset, pos);
          yield { offset: start, length: end - start, flag: b.type === v1.ExtentType.ZERO ? "ZERO" : "DATA" };
          pos = end;
        }
      }
      return;
    } catch (e: unknown) {
      if (!(e instanceof SanboxError) || !TRANSIENT.has(e.code) || retries-- <= 0) throw e;
    }
  }
}
