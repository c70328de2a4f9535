/**
 * Space reclamation when a reader (snapshot, or the live LUN on delete) goes away.
 *
 * Removing reader e with neighbours p < e < n merges the intervals (p, e] and
 * (e, n]. An entry in (p, e] that has a newer entry for the same block in (e, n]
 * is now invisible to every reader: drop it and release its slot. Without a next
 * reader (the LUN is gone and e was the last) every entry in (p, e] goes. The kept
 * entry is always the newest touch, which keeps CBT exact for tombstone bases.
 * Cost: O(entries written in (p, e]), i.e. the snapshot's own delta.
 *
 * Must run inside a metadata transaction, with the line's I/O fenced.
 */
import type { SnapshotRecord } from "./records.js";
import { parseSnapshotId } from "./snapshot-ids.js";
import type { StoreState } from "./store-state.js";

/**
 * Retires a deleted snapshot's record. While clones pin its blocks it stays,
 * marked "deleted" (the blocks and the clones' origin link need it). Once nothing
 * pins it, its reader goes (removeReader) and so does the record: the id itself
 * names the (line, epoch) CBT needs (snapshot-ids.ts), so no tombstone is kept.
 * Only a snapshot whose id predates that format keeps a tombstone record, until
 * its line goes. Must run inside a metadata transaction, with the line's I/O fenced.
 */
export function retireSnapshot(st: StoreState, s: SnapshotRecord): void {
  if (s.clones > 0) {
    st.saveSnap({ ...s, state: "deleted", groupId: null });
    return;
  }
  removeReader(st, s.line, s.epoch, false);
  dropRecord(st, s);
  dropLineIfUnused(st, s.line);
}

/** An unpinned deleted snapshot's record: gone if its id answers CBT alone, else a tombstone. */
function dropRecord(st: StoreState, s: SnapshotRecord): void {
  if (parseSnapshotId(st.idKey, s.id)) st.dropSnap(s.id);
  else st.saveSnap({ ...s, state: "deleted", groupId: null, clones: 0 });
}

export function removeReader(st: StoreState, line: number, e: number, isLive: boolean): void {
  const rec = st.line(line);
  const rs = st.readers.get(line) ?? [];
  let p = 0;
  for (const r of rs) if (r < e && r > p) p = r;
  let n: number | null = null;
  if (!isLive) {
    for (const r of rs) if (r > e && (n === null || r < n)) n = r;
    if (n === null && rec.lunId !== null) n = rec.epoch;
    st.removeReaderEpoch(line, e);
  }
  const bs = rec.blockSize;
  const entries = [...st.meta.writeSet(line, p, e)];
  for (const en of entries) {
    if (n !== null && !st.meta.latest(line, en.block, n, e)) continue;
    st.meta.removeEntry(line, en.block, en.epoch);
    if (en.slot > 0) st.decref(bs, en.slot);
  }
}

/**
 * Drops a line once nothing reads it (no LUN, no ready or pinned snapshot):
 * its remaining records (old-format tombstones) go, and the clone origin it
 * pinned is released (maybe cascading).
 */
export function dropLineIfUnused(st: StoreState, line: number): void {
  const rec = st.lines.get(line);
  if (!rec || rec.lunId !== null || (st.readers.get(line)?.length ?? 0) > 0) return;
  const left = [...st.meta.writeSet(line, 0, Number.MAX_SAFE_INTEGER)];
  for (const en of left) {
    st.meta.removeEntry(line, en.block, en.epoch);
    if (en.slot > 0) st.decref(rec.blockSize, en.slot);
  }
  for (const s of [...st.snaps.values()]) if (s.line === line) st.dropSnap(s.id);
  st.dropLine(line);
  if (rec.parent) {
    const origin = st.snaps.get(rec.parent.snapshotId);
    if (origin) {
      const o = { ...origin, clones: origin.clones - 1 };
      st.saveSnap(o);
      if (o.clones === 0 && o.state === "deleted") {
        removeReader(st, o.line, o.epoch, false);
        dropRecord(st, o);
        dropLineIfUnused(st, o.line);
      }
    }
  }
}
