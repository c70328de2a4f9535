/**
 * The rules a CSI SnapshotMetadata stream must keep (CSI spec, "Snapshot
 * Metadata Service RPCs": "Metadata Format", "Special considerations for
 * processing a snapshot metadata gRPC stream", and the field comments of
 * GetMetadataAllocatedResponse / GetMetadataDeltaResponse), as pure functions
 * over the messages a stream delivered.
 *
 * Each rule returns the first violation it finds as one line of evidence, or
 * undefined. They are independent on purpose: a conformance check applies one
 * rule, so a stream that breaks one rule fails exactly the check that names it.
 * Offsets are plain numbers (int64 fields decode to numbers; volumes stay far
 * below 2^53 bytes).
 */
import { normalize, subtract, type Extent } from "../../../src/extents/index.js";

export const FIXED_LENGTH = 1;
export const VARIABLE_LENGTH = 2;

export interface Tuple {
  byteOffset: number;
  sizeBytes: number;
}

/** One GetMetadataAllocatedResponse or GetMetadataDeltaResponse (the two have the same fields). */
export interface StreamMessage {
  blockMetadataType: number;
  volumeCapacityBytes: number;
  blockMetadata: readonly Tuple[];
}

/** What was asked for: the rules that depend on the request read it from here. */
export interface StreamRequest {
  startingOffset: number;
  maxResults: number;
}

export type Violation = string | undefined;

export function fmtTuple(t: Tuple): string {
  return `[${t.byteOffset}, +${t.sizeBytes})`;
}

function tuples(msgs: readonly StreamMessage[]): { t: Tuple; msg: number }[] {
  return msgs.flatMap((m, msg) => m.blockMetadata.map((t) => ({ t, msg })));
}

/** "A.byte_offset + A.size_bytes <= B.byte_offset" for every A sent before B, within and across messages. */
export function noOverlap(msgs: readonly StreamMessage[]): Violation {
  let prev: { t: Tuple; msg: number } | undefined;
  for (const cur of tuples(msgs)) {
    if (prev !== undefined && prev.t.byteOffset + prev.t.sizeBytes > cur.t.byteOffset) {
      const where = prev.msg === cur.msg ? `in message ${cur.msg}` : `across messages ${prev.msg} and ${cur.msg}`;
      return `tuple ${fmtTuple(cur.t)} starts before the end of the previous tuple ${fmtTuple(prev.t)} (${where})`;
    }
    prev = cur;
  }
  return undefined;
}

/** "S < B0.byte_offset + B0.size_bytes": no tuple of the stream ends at or before starting_offset. */
export function firstAfterStart(msgs: readonly StreamMessage[], req: StreamRequest): Violation {
  for (const { t, msg } of tuples(msgs)) {
    if (t.byteOffset + t.sizeBytes <= req.startingOffset) return `message ${msg}: tuple ${fmtTuple(t)} ends at or before starting_offset ${req.startingOffset}`;
  }
  return undefined;
}

/** volume_capacity_bytes "must be the same in all such messages returned by the stream". */
export function capacityConstant(msgs: readonly StreamMessage[]): Violation {
  const first = msgs[0];
  if (first === undefined) return undefined;
  const i = msgs.findIndex((m) => m.volumeCapacityBytes !== first.volumeCapacityBytes);
  return i < 0 ? undefined : `message ${i} says volume_capacity_bytes ${msgs[i]?.volumeCapacityBytes ?? "?"}, message 0 said ${first.volumeCapacityBytes}`;
}

/** block_metadata_type is FIXED_LENGTH or VARIABLE_LENGTH and "does not change mid-stream". */
export function typeConstant(msgs: readonly StreamMessage[]): Violation {
  const first = msgs[0];
  if (first === undefined) return undefined;
  if (first.blockMetadataType !== FIXED_LENGTH && first.blockMetadataType !== VARIABLE_LENGTH) return `message 0 has block_metadata_type ${first.blockMetadataType} (neither FIXED_LENGTH nor VARIABLE_LENGTH)`;
  const i = msgs.findIndex((m) => m.blockMetadataType !== first.blockMetadataType);
  return i < 0 ? undefined : `message ${i} has block_metadata_type ${msgs[i]?.blockMetadataType ?? "?"}, message 0 had ${first.blockMetadataType}`;
}

/** With max_results > 0, no message carries more tuples than that. */
export function maxResultsHonoured(msgs: readonly StreamMessage[], req: StreamRequest): Violation {
  if (req.maxResults <= 0) return undefined;
  const i = msgs.findIndex((m) => m.blockMetadata.length > req.maxResults);
  return i < 0 ? undefined : `message ${i} carries ${msgs[i]?.blockMetadata.length ?? "?"} tuples, max_results was ${req.maxResults}`;
}

/** FIXED_LENGTH: "the size_bytes field of each message in the block_metadata list MUST be constant" (over the whole stream). */
export function fixedSizesEqual(msgs: readonly StreamMessage[]): Violation {
  if (msgs[0]?.blockMetadataType !== FIXED_LENGTH) return undefined;
  const all = tuples(msgs);
  const size = all[0]?.t.sizeBytes;
  const odd = all.find(({ t }) => t.sizeBytes !== size);
  return odd === undefined ? undefined : `FIXED_LENGTH stream: message ${odd.msg} has tuple ${fmtTuple(odd.t)}, the first tuple had size ${size ?? "?"}`;
}

/** size_bytes > 0, byte_offset >= 0, and every tuple inside the volume. */
export function tuplesInVolume(msgs: readonly StreamMessage[]): Violation {
  for (const { t, msg } of tuples(msgs)) {
    const cap = msgs[msg]?.volumeCapacityBytes ?? 0;
    if (t.sizeBytes <= 0) return `message ${msg}: tuple ${fmtTuple(t)} has size_bytes ≤ 0`;
    if (t.byteOffset < 0 || t.byteOffset + t.sizeBytes > cap) return `message ${msg}: tuple ${fmtTuple(t)} lies outside the volume (${cap} bytes)`;
  }
  return undefined;
}

/** The stream's tuples as a sorted, coalesced list of byte ranges. */
export function ranges(msgs: readonly StreamMessage[]): Extent[] {
  return normalize(tuples(msgs).map(({ t }) => ({ offset: t.byteOffset, length: t.sizeBytes })));
}

/** The part of a range list at or after `from`. */
export function rangesFrom(list: readonly Extent[], from: number): Extent[] {
  return from <= 0 ? [...list] : subtract(list, [{ offset: 0, length: from }]);
}

function fmtRanges(list: readonly Extent[], max = 4): string {
  const s = list.slice(0, max).map((r) => `[${r.offset}, +${r.length})`).join(" ");
  return list.length > max ? `${s} … (${list.length} in all)` : s || "(none)";
}

/** `a` minus `b` and `b` minus `a`, stated as evidence; undefined when equal. */
export function rangeDifference(a: readonly Extent[], b: readonly Extent[], aName: string, bName: string): Violation {
  const onlyA = subtract(a, b);
  const onlyB = subtract(b, a);
  if (onlyA.length === 0 && onlyB.length === 0) return undefined;
  const parts: string[] = [];
  if (onlyA.length > 0) parts.push(`only in ${aName}: ${fmtRanges(onlyA)}`);
  if (onlyB.length > 0) parts.push(`only in ${bName}: ${fmtRanges(onlyB)}`);
  return parts.join("; ");
}

/**
 * Resume ("Special considerations…"): a CO interrupted after some messages
 * re-sends the request with starting_offset = the end of the last tuple it
 * received (`resumeOffset`); from that offset on, the resumed stream must cover
 * exactly what the uninterrupted stream `full` covers.
 */
export function resumeOffset(prefix: readonly StreamMessage[]): number | undefined {
  const all = tuples(prefix);
  const last = all[all.length - 1];
  return last === undefined ? undefined : last.t.byteOffset + last.t.sizeBytes;
}

export function resumeMatches(full: readonly StreamMessage[], resumed: readonly StreamMessage[], at: number): Violation {
  return rangeDifference(rangesFrom(ranges(full), at), rangesFrom(ranges(resumed), at), "the uninterrupted stream", `the stream resumed at ${at}`);
}

/** Allocated ⊇ delta: every range a delta from an empty volume's snapshot reports is allocated in the target. */
export function coversDelta(allocated: readonly StreamMessage[], delta: readonly StreamMessage[]): Violation {
  const missing = subtract(ranges(delta), ranges(allocated));
  return missing.length === 0 ? undefined : `changed since the empty snapshot but not allocated: ${fmtRanges(missing)}`;
}

/** Applies a delta to a copy of `base`, taking each reported range from `target` (the apply-delta oracle). */
export function applyDelta(base: Buffer, target: Buffer, delta: readonly StreamMessage[]): Buffer {
  const out = Buffer.alloc(target.length);
  base.copy(out, 0, 0, Math.min(base.length, target.length));
  for (const r of ranges(delta)) target.copy(out, r.offset, r.offset, Math.min(target.length, r.offset + r.length));
  return out;
}
