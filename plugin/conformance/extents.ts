/**
 * Flat views of CBT streams for the checks: the extents of every message in
 * order, the union of their ranges, and range coverage queries. Pure functions.
 */
import type { Decoded } from "../../src/rpc/service.js";
import { v1 } from "../../src/rpc/proto.js";

export type Message = Decoded<v1.IBlockMetadataResponse>;

export interface Ext {
  offset: number;
  length: number;
  type: "DATA" | "ZERO" | "UNSPECIFIED";
}

export function flatten(msgs: readonly Message[]): Ext[] {
  return msgs.flatMap((m) =>
    m.blockMetadata.map((b) => ({
      offset: b.byteOffset,
      length: b.sizeBytes,
      type: b.type === v1.ExtentType.DATA ? ("DATA" as const) : b.type === v1.ExtentType.ZERO ? ("ZERO" as const) : ("UNSPECIFIED" as const),
    })),
  );
}

export interface Range {
  offset: number;
  length: number;
}

/** Sorted, disjoint, coalesced union of the ranges. */
export function union(list: readonly Range[]): Range[] {
  const sorted = [...list].filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && r.offset <= last.offset + last.length) last.length = Math.max(last.length, r.offset + r.length - last.offset);
    else out.push({ offset: r.offset, length: r.length });
  }
  return out;
}

/** The parts of [offset, offset+length) not covered by `u` (a union). */
export function uncovered(u: readonly Range[], offset: number, length: number): Range[] {
  const out: Range[] = [];
  let pos = offset;
  const end = offset + length;
  for (const r of u) {
    if (r.offset + r.length <= pos) continue;
    if (r.offset >= end) break;
    if (r.offset > pos) out.push({ offset: pos, length: r.offset - pos });
    pos = Math.max(pos, r.offset + r.length);
    if (pos >= end) break;
  }
  if (pos < end) out.push({ offset: pos, length: end - pos });
  return out;
}

export function sameRanges(a: readonly Range[], b: readonly Range[]): boolean {
  const ua = union(a);
  const ub = union(b);
  return ua.length === ub.length && ua.every((r, i) => r.offset === ub[i]?.offset && r.length === ub[i]?.length);
}

export function fmt(r: Range): string {
  return `[${r.offset}, +${r.length})`;
}

export function fmtList(list: readonly Range[], max = 6): string {
  const s = list.slice(0, max).map(fmt).join(" ");
  return list.length > max ? `${s} … (${list.length} in all)` : s || "(none)";
}
