/**
 * Extents that carry a flag (CBT's DATA/ZERO, NBD's hole/zero). A flagged list
 * is sorted and non-overlapping; adjacent extents merge only when flags are equal.
 */
import { end, type Extent } from "./extent.js";

export interface FlaggedExtent<F> extends Extent {
  readonly flag: F;
}

/** Merges adjacent extents with equal flags. Input must be sorted and non-overlapping. */
export function coalesceFlagged<F>(list: Iterable<FlaggedExtent<F>>): FlaggedExtent<F>[] {
  const out: FlaggedExtent<F>[] = [];
  for (const e of list) {
    if (e.length <= 0) continue;
    const last = out[out.length - 1];
    if (last && end(last) === e.offset && last.flag === e.flag) out[out.length - 1] = { offset: last.offset, length: last.length + e.length, flag: e.flag };
    else out.push({ offset: e.offset, length: e.length, flag: e.flag });
  }
  return out;
}

/** The part of a flagged list inside [start, stop), flags kept. */
export function clipFlagged<F>(list: readonly FlaggedExtent<F>[], start: number, stop: number): FlaggedExtent<F>[] {
  const out: FlaggedExtent<F>[] = [];
  for (const e of list) {
    const lo = Math.max(e.offset, start);
    const hi = Math.min(end(e), stop);
    if (lo < hi) out.push({ offset: lo, length: hi - lo, flag: e.flag });
  }
  return out;
}

/** Drops flags: the covered set as a normal extent list. */
export function unflag<F>(list: readonly FlaggedExtent<F>[]): Extent[] {
  const out: Extent[] = [];
  for (const e of list) {
    const last = out[out.length - 1];
    if (last && end(last) >= e.offset) out[out.length - 1] = { offset: last.offset, length: Math.max(end(last), end(e)) - last.offset };
    else out.push({ offset: e.offset, length: e.length });
  }
  return out;
}
