/**
 * Flat views of CBT streams for the checks: the extents of every message in
 * order, the union of their ranges, and range coverage queries. Pure functions,
 * over the shared extent types and algebra (src/extents).
 */
import { normalize, subtract, type Extent, type FlaggedExtent } from "../../src/extents/index.js";
import type { Decoded } from "../../src/rpc/service.js";
import { v1 } from "../../src/rpc/proto.js";

export type Message = Decoded<v1.IBlockMetadataResponse>;

/** An extent as the array reported it; UNSPECIFIED is kept so a check can flag it. */
export type ReportedExtent = FlaggedExtent<"DATA" | "ZERO" | "UNSPECIFIED">;

export function flatten(msgs: readonly Message[]): ReportedExtent[] {
  return msgs.flatMap((m) =>
    m.blockMetadata.map((b) => ({
      offset: b.byteOffset,
      length: b.sizeBytes,
      flag: b.type === v1.ExtentType.DATA ? ("DATA" as const) : b.type === v1.ExtentType.ZERO ? ("ZERO" as const) : ("UNSPECIFIED" as const),
    })),
  );
}

/** Sorted, disjoint, coalesced union of the ranges (normalize, under the name the checks read). */
export function union(list: readonly Extent[]): Extent[] {
  return normalize(list);
}

/** The parts of [offset, offset+length) not covered by `u` (a union). */
export function uncovered(u: readonly Extent[], offset: number, length: number): Extent[] {
  return length > 0 ? subtract([{ offset, length }], u) : [];
}

export function sameRanges(a: readonly Extent[], b: readonly Extent[]): boolean {
  const ua = union(a);
  const ub = union(b);
  return ua.length === ub.length && ua.every((r, i) => r.offset === ub[i]?.offset && r.length === ub[i]?.length);
}

export function fmt(r: Extent): string {
  return `[${r.offset}, +${r.length})`;
}

export function fmtList(list: readonly Extent[], max = 6): string {
  const s = list.slice(0, max).map(fmt).join(" ");
  return list.length > max ? `${s} … (${list.length} in all)` : s || "(none)";
}
