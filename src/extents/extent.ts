/**
 * Byte extents and the invariant every list in this module keeps.
 *
 * An `ExtentList` is sorted by offset, non-overlapping and non-adjacent
 * (coalesced), with no empty extents. Every function in src/extents takes and
 * returns lists in that normal form; `normalize` turns any list into it.
 * This is the shape CSI SnapshotMetadata and NBD block status use (ANCHORS 1.3, 8.1).
 */
export interface Extent {
  readonly offset: number;
  readonly length: number;
}
export type ExtentList = readonly Extent[];

export function end(e: Extent): number {
  return e.offset + e.length;
}

/** True when `list` is sorted, non-overlapping, non-adjacent and has no empty extents. */
export function isNormal(list: ExtentList): boolean {
  let prevEnd = -1;
  for (const e of list) {
    if (!(e.length > 0) || e.offset < 0 || e.offset <= prevEnd) return false;
    prevEnd = end(e);
  }
  return true;
}

/** Sorts and coalesces an arbitrary list (overlapping or adjacent extents merge). */
export function normalize(list: Iterable<Extent>): Extent[] {
  const sorted = [...list].filter((e) => e.length > 0).sort((a, b) => a.offset - b.offset);
  const out: Extent[] = [];
  for (const e of sorted) {
    const last = out[out.length - 1];
    if (last && e.offset <= end(last)) {
      if (end(e) > end(last)) out[out.length - 1] = { offset: last.offset, length: end(e) - last.offset };
    } else {
      out.push({ offset: e.offset, length: e.length });
    }
  }
  return out;
}

/** Total bytes covered by a normal list. */
export function totalLength(list: ExtentList): number {
  let n = 0;
  for (const e of list) n += e.length;
  return n;
}
