/** Extent-list algebra: pure functions over sorted, non-overlapping byte extents. */
export { type Extent, type ExtentList, end, isNormal, normalize, totalLength } from "./extent.js";
export { union, intersect, subtract, clip } from "./algebra.js";
export { alignOut, alignIn, fromBlocks } from "./align.js";
export { type FlaggedExtent, coalesceFlagged, clipFlagged, unflag } from "./flagged.js";
export { type SourcePiece, type CoalescedRead, type CoalesceLimits, coalesceReads } from "./coalesce.js";
