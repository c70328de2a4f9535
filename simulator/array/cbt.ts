/**
 * Changed-block tracking: which blocks differ between a base snapshot and a target
 * (a snapshot or the live LUN), each flagged DATA or ZERO (trimmed, zeroed, or
 * shrunk away) as CSI SnapshotMetadata + rbd diff report them (ANCHORS 1.3, 2.2).
 *
 * Cost is O(changed entries): we walk only the per-epoch write sets (`wset`,
 * dm-era style, ANCHORS 3.1) in the epoch range (base, target] on the base's line,
 * plus every entry of the clone lines between the base's line and the target
 * (a clone's own entries are exactly its changes since its origin). Nothing scans
 * the LUN or its unchanged blocks. Correct after deleting intermediate snapshots or
 * the base itself (only its line and epoch are needed, which a deleted snapshot's
 * id still carries, snapshot-ids.ts; see store-state.ts for the invariant), after
 * revert, and across resize (shrink writes zero entries).
 *
 * We cannot answer (CbtUnavailableError, "do a full backup") when the base is not
 * in the target's history: another LUN's lineage, a snapshot taken after the
 * target's clone fork, or a different block size.
 */
import { CbtUnavailableError, InvalidArgumentError } from "../../src/errors.js";
import { coalesceFlagged, type FlaggedExtent } from "../../src/extents/index.js";
import type { SnapshotRecord } from "./records.js";
import type { Reader, StoreState } from "./store-state.js";

export type ChangeFlag = "DATA" | "ZERO";
export type ChangedExtent = FlaggedExtent<ChangeFlag>;

/** What CBT needs of a base: a snapshot record, or what a deleted snapshot's id says. */
export type CbtBase = Pick<SnapshotRecord, "id" | "line" | "epoch" | "blockSize">;

export function changedBlocks(st: StoreState, base: CbtBase, target: Reader): Map<number, number> {
  if (base.blockSize !== target.blockSize) throw new CbtUnavailableError(`base snapshot ${base.id} has a different block size; a full backup is needed`);
  if (!st.lines.has(base.line)) throw new CbtUnavailableError(`base snapshot ${base.id} is no longer tracked; a full backup is needed`);
  const segments: { line: number; from: number; to: number }[] = [];
  let line = target.line;
  let x = target.epoch;
  for (;;) {
    if (line === base.line) {
      if (base.epoch > x) {
        if (segments.length === 0) throw new InvalidArgumentError(`base snapshot ${base.id} is newer than the target`);
        throw new CbtUnavailableError(`base snapshot ${base.id} was taken after the target's clone origin; a full backup is needed`);
      }
      segments.push({ line, from: base.epoch, to: x });
      break;
    }
    segments.push({ line, from: 0, to: x });
    const parent = st.line(line).parent;
    if (!parent) throw new CbtUnavailableError(`base snapshot ${base.id} is not in the history of the target; a full backup is needed`);
    line = parent.line;
    x = parent.epoch;
  }
  // Oldest segment first, epochs ascending: the last value seen is what the target reads.
  const changed = new Map<number, number>();
  for (const seg of segments.reverse()) for (const e of st.meta.writeSet(seg.line, seg.from, seg.to)) changed.set(e.block, e.slot);
  return changed;
}

export function changedExtents(st: StoreState, base: CbtBase, target: Reader): ChangedExtent[] {
  const changed = changedBlocks(st, base, target);
  const limit = Math.ceil(target.size / target.blockSize);
  const blocks = [...changed.keys()].filter((b) => b < limit).sort((a, b) => a - b);
  const bs = target.blockSize;
  return coalesceFlagged(blocks.map((b) => ({ offset: b * bs, length: bs, flag: (changed.get(b) ?? 0) > 0 ? "DATA" : "ZERO" })));
}
