/**
 * Pure helpers over a file's extent map (Datastore.extentMap): translate LUN byte
 * ranges (a CBT diff) into the file byte ranges stored there, and list a file's
 * mapped ranges and holes. These are the building blocks of the backup plugin's
 * revert plan; they do no I/O.
 */
import { normalize, subtract, type Extent, type ExtentList } from "../extents/index.js";
import type { FileExtent } from "./format.js";

/** File ranges that hold data (the union of the map's file sides). */
export function mappedRanges(map: readonly FileExtent[]): Extent[] {
  return normalize(map.map((x) => ({ offset: x.fileOffset, length: x.length })));
}

/** File ranges in [0, size) that no extent maps: they read as zeros. */
export function holes(map: readonly FileExtent[], size: number): Extent[] {
  return subtract(size > 0 ? [{ offset: 0, length: size }] : [], mappedRanges(map));
}

/**
 * The file byte ranges whose LUN location intersects `lun` (a normal extent list):
 * "which parts of this file did these LUN changes touch". O(|map| + |lun|).
 */
export function fileRangesOnLun(map: readonly FileExtent[], lun: ExtentList): Extent[] {
  const byLun = [...map].sort((a, b) => a.lunOffset - b.lunOffset);
  const out: Extent[] = [];
  let j = 0;
  for (const x of byLun) {
    const xEnd = x.lunOffset + x.length;
    while (j < lun.length && (lun[j] as Extent).offset + (lun[j] as Extent).length <= x.lunOffset) j++;
    for (let k = j; k < lun.length; k++) {
      const e = lun[k] as Extent;
      if (e.offset >= xEnd) break;
      const lo = Math.max(e.offset, x.lunOffset);
      const hi = Math.min(e.offset + e.length, xEnd);
      if (hi > lo) out.push({ offset: x.fileOffset + (lo - x.lunOffset), length: hi - lo });
    }
  }
  return normalize(out);
}
