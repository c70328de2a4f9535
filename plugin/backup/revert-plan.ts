/**
 * The revert plan: which bytes of a VMDK backup image must change so that an
 * image holding a flat file as it was in snapshot A holds it as it is in
 * snapshot B. Pure: a function of the file's two extent maps, its two sizes,
 * and the datastore LUN's changed extents between A and B. No I/O.
 *
 * For a file byte x below both sizes, its content in a snapshot is
 *
 *     mapped(x) ? LUN[lun(x)] : 0
 *
 * so x can differ between A and B only if
 *   (1) the mapping differs: lunA(x) != lunB(x), or one side is a hole
 *       (reallocated, newly written, trimmed ranges); or
 *   (2) the mapping is the same and that LUN byte changed (CBT A→B).
 * The plan takes (1) ∪ (2), where (2) is looked up through BOTH maps (the
 * change as seen by A's and by B's layout, which covers (2) twice over and
 * costs nothing), plus the size change: [min(sizeA, sizeB), sizeB) is
 * rewritten when the file grew; a shrink just sets the size.
 *
 * Every touched range is then split against B's map:
 *
 *   file   0        4K        8K        12K       16K
 *          |  same  | changed | remapped|  holed  |       touched = 4K..16K
 *   B map  |  L100  |  L104   |  L200   |   --    |
 *   plan            copy 4K@L104, 4K@L200   zero 12K..16K, size = sizeB
 *
 * The backup plugin uses the one plan twice: step 5 brings the previous
 * point's image (A = previous S1) to T2 (B = S2), and the revert (step 6)
 * brings it back to T1 (A = S2, B = S1). A full backup is A = the empty file.
 */
import { clip, end, intersect, normalize, subtract, type Extent, type ExtentList } from "../../src/extents/index.js";
import type { FileExtent } from "../../src/datastore/format.js";
import { fileRangesOnLun, mappedRanges } from "../../src/datastore/extent-map.js";

/** A file as one snapshot sees it: its extent map (Datastore.extentMap) and its size. */
export interface FileState {
  readonly map: readonly FileExtent[];
  readonly size: number;
}

/** Read `length` bytes at `srcOffset` of the source export, write them at `dstOffset` of the image. */
export interface CopyRange {
  readonly srcOffset: number;
  readonly dstOffset: number;
  readonly length: number;
}

export interface RevertPlan {
  /** Ranges to read from B's snapshot (LUN offsets) into the image (file offsets), ascending by dstOffset. */
  readonly copies: CopyRange[];
  /** File ranges that are holes in B: the image must read zeros there. */
  readonly zeros: Extent[];
  /** The image's size afterwards: the file's size in B. */
  readonly size: number;
  /** Every file range the plan rewrites (copies ∪ zeros): the bytes reverted. */
  readonly touched: Extent[];
}

/** File ranges below `size` where the two maps send a byte to different LUN places (or one side is a hole). */
export function mappingDifference(a: readonly FileExtent[], b: readonly FileExtent[], size: number): Extent[] {
  const cuts = new Set<number>([0, size]);
  for (const m of [...a, ...b]) {
    if (m.fileOffset < size) cuts.add(m.fileOffset);
    if (m.fileOffset + m.length < size) cuts.add(m.fileOffset + m.length);
  }
  const points = [...cuts].filter((x) => x >= 0 && x <= size).sort((x, y) => x - y);
  const sa = sortByFile(a);
  const sb = sortByFile(b);
  const out: Extent[] = [];
  let i = 0;
  let j = 0;
  for (let k = 0; k + 1 < points.length; k++) {
    const lo = points[k] as number;
    const hi = points[k + 1] as number;
    if (hi <= lo) continue;
    while (i < sa.length && fileEnd(sa[i] as FileExtent) <= lo) i++;
    while (j < sb.length && fileEnd(sb[j] as FileExtent) <= lo) j++;
    const la = lunAt(sa[i], lo);
    const lb = lunAt(sb[j], lo);
    // On a segment between cuts each map is either a hole or linear with slope 1: equal at lo means equal throughout.
    if (la !== lb) out.push({ offset: lo, length: hi - lo });
  }
  return normalize(out);
}

/**
 * The plan that turns an image holding the file at A into the file at B, given
 * the datastore LUN's changed extents between A and B (either direction; CBT may
 * over-report, never under-report).
 */
export function planRevert(a: FileState, b: FileState, changedLun: ExtentList): RevertPlan {
  const lunChanges = normalize(changedLun);
  const common = Math.min(a.size, b.size);
  const candidates = normalize([
    ...fileRangesOnLun(a.map, lunChanges),
    ...fileRangesOnLun(b.map, lunChanges),
    ...mappingDifference(a.map, b.map, common),
    ...(b.size > common ? [{ offset: common, length: b.size - common }] : []),
  ]);
  const touched = clip(candidates, 0, b.size);
  const bMapped = clip(mappedRanges(b.map), 0, b.size);
  const zeros = subtract(touched, bMapped);
  const copies = copiesThrough(b.map, intersect(touched, bMapped));
  return { copies, zeros, size: b.size, touched };
}

/** Pieces of `ranges` (file offsets, all mapped in `map`) with their LUN offsets. */
export function copiesThrough(map: readonly FileExtent[], ranges: ExtentList): CopyRange[] {
  const sorted = sortByFile(map);
  const out: CopyRange[] = [];
  let i = 0;
  for (const r of ranges) {
    while (i < sorted.length && fileEnd(sorted[i] as FileExtent) <= r.offset) i++;
    for (let k = i; k < sorted.length; k++) {
      const m = sorted[k] as FileExtent;
      if (m.fileOffset >= end(r)) break;
      const lo = Math.max(r.offset, m.fileOffset);
      const hi = Math.min(end(r), fileEnd(m));
      if (hi > lo) appendCopy(out, { srcOffset: m.lunOffset + (lo - m.fileOffset), dstOffset: lo, length: hi - lo });
    }
  }
  return out;
}

function appendCopy(out: CopyRange[], c: CopyRange): void {
  const last = out[out.length - 1];
  if (last && last.dstOffset + last.length === c.dstOffset && last.srcOffset + last.length === c.srcOffset) {
    out[out.length - 1] = { srcOffset: last.srcOffset, dstOffset: last.dstOffset, length: last.length + c.length };
  } else out.push(c);
}

function sortByFile(map: readonly FileExtent[]): FileExtent[] {
  return [...map].filter((m) => m.length > 0).sort((x, y) => x.fileOffset - y.fileOffset);
}

function fileEnd(m: FileExtent): number {
  return m.fileOffset + m.length;
}

/** The LUN offset of file byte x under extent m, or -1 for a hole. */
function lunAt(m: FileExtent | undefined, x: number): number {
  if (m === undefined || x < m.fileOffset || x >= fileEnd(m)) return -1;
  return m.lunOffset + (x - m.fileOffset);
}
