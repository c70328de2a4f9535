/**
 * Set algebra over normal extent lists (see extent.ts): union, intersect,
 * subtract, clip. Each is one linear merge pass, O(|a| + |b|).
 */
import { end, normalize, type Extent, type ExtentList } from "./extent.js";

export function union(a: ExtentList, b: ExtentList): Extent[] {
  // A merge of two sorted lists followed by coalescing; normalize's sort is O(n) on merged input in practice.
  return normalize([...a, ...b]);
}

export function intersect(a: ExtentList, b: ExtentList): Extent[] {
  const out: Extent[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i] as Extent;
    const y = b[j] as Extent;
    const lo = Math.max(x.offset, y.offset);
    const hi = Math.min(end(x), end(y));
    if (lo < hi) out.push({ offset: lo, length: hi - lo });
    if (end(x) < end(y)) i++;
    else j++;
  }
  return normalize(out);
}

export function subtract(a: ExtentList, b: ExtentList): Extent[] {
  const out: Extent[] = [];
  let j = 0;
  for (const x of a) {
    let cur = x.offset;
    const stop = end(x);
    while (j < b.length && end(b[j] as Extent) <= cur) j++;
    let k = j;
    while (k < b.length && (b[k] as Extent).offset < stop) {
      const y = b[k] as Extent;
      if (y.offset > cur) out.push({ offset: cur, length: y.offset - cur });
      cur = Math.max(cur, end(y));
      k++;
    }
    if (cur < stop) out.push({ offset: cur, length: stop - cur });
  }
  return out;
}

/** The part of `list` inside [start, stop). */
export function clip(list: ExtentList, start: number, stop: number): Extent[] {
  if (stop <= start) return [];
  return intersect(list, [{ offset: start, length: stop - start }]);
}
