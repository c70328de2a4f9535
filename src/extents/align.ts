/**
 * Block alignment. CBT answers at block granularity: widening an extent to
 * block boundaries may add false positives inside a block, never lose a change.
 */
import { InvalidArgumentError } from "../errors.js";
import { end, normalize, type Extent, type ExtentList } from "./extent.js";

function checkBlock(blockSize: number): void {
  if (!Number.isSafeInteger(blockSize) || blockSize <= 0) throw new InvalidArgumentError(`block size must be a positive integer, got ${blockSize}`);
}

/** Widens every extent outwards to `blockSize` boundaries, then coalesces. */
export function alignOut(list: ExtentList, blockSize: number): Extent[] {
  checkBlock(blockSize);
  return normalize(
    list.map((e) => {
      const lo = Math.floor(e.offset / blockSize) * blockSize;
      const hi = Math.ceil(end(e) / blockSize) * blockSize;
      return { offset: lo, length: hi - lo };
    }),
  );
}

/** Shrinks every extent inwards to whole blocks, dropping extents that hold no whole block. */
export function alignIn(list: ExtentList, blockSize: number): Extent[] {
  checkBlock(blockSize);
  const out: Extent[] = [];
  for (const e of list) {
    const lo = Math.ceil(e.offset / blockSize) * blockSize;
    const hi = Math.floor(end(e) / blockSize) * blockSize;
    if (hi > lo) out.push({ offset: lo, length: hi - lo });
  }
  return normalize(out);
}

/** Byte extents of a sorted list of block indices, adjacent blocks merged. */
export function fromBlocks(sortedBlocks: Iterable<number>, blockSize: number): Extent[] {
  checkBlock(blockSize);
  const out: Extent[] = [];
  for (const b of sortedBlocks) {
    const last = out[out.length - 1];
    const off = b * blockSize;
    if (last && end(last) === off) out[out.length - 1] = { offset: last.offset, length: last.length + blockSize };
    else if (last && end(last) > off) throw new InvalidArgumentError("fromBlocks: block indices must be sorted and distinct");
    else out.push({ offset: off, length: blockSize });
  }
  return out;
}
