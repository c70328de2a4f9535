/**
 * The invariant checker (fsck). Read-only; O(metadata), plus slot reads when deep.
 *
 *  1. maps and wset hold exactly the same entries; epochs are within 1..line.epoch.
 *  2. Between consecutive readers of a line, at most one entry per block.
 *  3. Reference counts: refs[slot] equals the number of entries naming it (absent = 1);
 *     no slot is both referenced and free/pending; no slot leaks (every slot up to
 *     the high-water mark is referenced, free or pending).
 *  4. Catalogue: LUN <-> line links, snapshot lines, group members, clone counts,
 *     readers list, sizes multiples of the block size, allocated-block counters;
 *     no deleted snapshot's record outlives its last clone unless its id predates
 *     snapshot-ids.ts (a kept tombstone is a metadata leak).
 *  5. Every reader sees zeros past its size; allocation extents are sorted and
 *     coalesced; (deep) every data block of every snapshot and LUN can be read.
 */
import { fromBlocks, isNormal } from "../../src/extents/index.js";
import { dataBlocks } from "./block-engine.js";
import { parseSnapshotId } from "./snapshot-ids.js";
import type { Reader, StoreState } from "./store-state.js";

export interface CheckReport {
  ok: boolean;
  errors: string[];
  stats: {
    luns: number;
    snapshots: number;
    tombstones: number;
    groups: number;
    /** Catalogue records in LMDB (LUNs, lines, snapshots, groups, counters). */
    records: number;
    entries: number;
    referencedSlots: number;
    freeSlots: number;
    pendingSlots: number;
  };
}

export async function checkStore(st: StoreState, opts: { deep: boolean }): Promise<CheckReport> {
  const errors: string[] = [];
  const err = (m: string): void => {
    if (errors.length < 200) errors.push(m);
  };
  let entries = 0;
  const refs = new Map<string, number>(); // "bs:slot" -> count

  // 1 + 2 + collect references
  for (const line of st.lines.values()) {
    const mapSet = new Set<string>();
    for (const e of st.meta.blockRange(line.id, 0, Number.MAX_SAFE_INTEGER)) {
      entries++;
      mapSet.add(`${e.block}/${e.epoch}/${e.slot}`);
      if (e.epoch < 1 || e.epoch > line.epoch) err(`line ${line.id} block ${e.block}: epoch ${e.epoch} outside 1..${line.epoch}`);
      if (e.slot > 0) refs.set(`${line.blockSize}:${e.slot}`, (refs.get(`${line.blockSize}:${e.slot}`) ?? 0) + 1);
    }
    let wsetCount = 0;
    for (const e of st.meta.writeSet(line.id, 0, Number.MAX_SAFE_INTEGER)) {
      wsetCount++;
      if (!mapSet.has(`${e.block}/${e.epoch}/${e.slot}`)) err(`line ${line.id}: wset entry block ${e.block} epoch ${e.epoch} missing from maps`);
    }
    if (wsetCount !== mapSet.size) err(`line ${line.id}: maps has ${mapSet.size} entries, wset ${wsetCount}`);
    const bounds = [...(st.readers.get(line.id) ?? [])];
    if (line.lunId !== null) bounds.push(line.epoch);
    const seen = new Set<string>();
    for (const e of st.meta.blockRange(line.id, 0, Number.MAX_SAFE_INTEGER)) {
      const interval = bounds.findIndex((r) => e.epoch <= r);
      if (interval < 0) {
        err(`line ${line.id} block ${e.block}: entry at epoch ${e.epoch} is visible to no reader`);
        continue;
      }
      const k = `${e.block}/${interval}`;
      if (seen.has(k)) err(`line ${line.id} block ${e.block}: two entries between the same readers (epoch ${e.epoch})`);
      seen.add(k);
    }
  }

  // 3: refcounts and the free lists
  for (const { key, value } of st.meta.refs.getRange({})) {
    const k = `${key[0]}:${key[1]}`;
    if ((refs.get(k) ?? 0) !== value) err(`slot ${k}: refcount record ${value}, actual ${refs.get(k) ?? 0}`);
  }
  for (const [k, n] of refs) if (n > 1 && st.meta.refs.get([Number(k.split(":")[0]), Number(k.split(":")[1])]) !== n) err(`slot ${k}: ${n} references but no refcount record`);
  let freeSlots = 0;
  let pendingSlots = 0;
  for (const f of st.pool.snapshotState()) {
    const state = new Map<number, string>();
    for (const s of f.free) {
      if (state.has(s)) err(`slot ${f.blockSize}:${s} is on the free list twice`);
      state.set(s, "free");
    }
    for (const s of f.pending) {
      if (state.has(s)) err(`slot ${f.blockSize}:${s} is both free and pending`);
      state.set(s, "pending");
    }
    freeSlots += f.free.length;
    pendingSlots += f.pending.length;
    for (let s = 1; s <= f.hwm; s++) {
      const referenced = refs.has(`${f.blockSize}:${s}`);
      const st2 = state.get(s);
      if (referenced && st2) err(`slot ${f.blockSize}:${s} is referenced and ${st2}`);
      if (!referenced && !st2) err(`slot ${f.blockSize}:${s} leaked (neither referenced, free nor pending)`);
    }
    for (const k of refs.keys()) {
      const [bs, s] = k.split(":").map(Number);
      if (bs === f.blockSize && (s ?? 0) > f.hwm) err(`slot ${k} is beyond the high-water mark ${f.hwm}`);
    }
  }

  // 4: catalogue
  for (const lun of st.luns.values()) {
    const line = st.lines.get(lun.line);
    if (!line) err(`LUN ${lun.name}: line ${lun.line} missing`);
    else if (line.lunId !== lun.id) err(`LUN ${lun.name}: line ${lun.line} belongs to ${line.lunId}`);
    if (lun.size % lun.blockSize !== 0 || lun.size <= 0) err(`LUN ${lun.name}: bad size ${lun.size}`);
  }
  for (const line of st.lines.values()) {
    if (line.lunId !== null && !st.luns.has(line.lunId)) err(`line ${line.id}: LUN ${line.lunId} missing`);
    if (line.parent) {
      const o = st.snaps.get(line.parent.snapshotId);
      if (!o || o.line !== line.parent.line || o.epoch !== line.parent.epoch) err(`line ${line.id}: clone origin ${line.parent.snapshotId} missing or moved`);
    }
    const want = [...st.snaps.values()].filter((s) => s.line === line.id && (s.state === "ready" || s.clones > 0)).map((s) => s.epoch).sort((a, b) => a - b);
    if (JSON.stringify(want) !== JSON.stringify(st.readers.get(line.id) ?? [])) err(`line ${line.id}: readers ${JSON.stringify(st.readers.get(line.id) ?? [])}, expected ${JSON.stringify(want)}`);
  }
  for (const s of st.snaps.values()) {
    if (!st.lines.has(s.line)) err(`snapshot ${s.id}: line ${s.line} missing`);
    if (s.state === "ready" && !st.luns.has(s.lunId)) err(`snapshot ${s.id}: LUN ${s.lunId} missing`);
    const clones = [...st.lines.values()].filter((l) => l.parent?.snapshotId === s.id).length;
    if (clones !== s.clones) err(`snapshot ${s.id}: clone count ${s.clones}, actual ${clones}`);
    if (s.state === "deleted" && s.clones === 0 && parseSnapshotId(st.idKey, s.id)) err(`snapshot ${s.id}: deleted, unpinned, and its record is still kept`);
    if (s.groupId !== null) {
      const g = st.groups.get(s.groupId);
      if (!g || !g.snapshotIds.includes(s.id)) err(`snapshot ${s.id}: group ${s.groupId} missing or does not list it`);
    }
  }
  for (const g of st.groups.values()) {
    // An incomplete group is an in-flight cut's intent record: legal only without members.
    if (g.state !== "complete" && g.snapshotIds.length > 0) err(`group ${g.id}: incomplete but lists members`);
    for (const id of g.snapshotIds) if (st.snaps.get(id)?.state !== "ready") err(`group ${g.id}: member ${id} missing`);
  }

  // 5: readers
  const readers: { what: string; r: Reader; alloc: number }[] = [];
  for (const l of st.luns.values()) if (st.lines.has(l.line)) readers.push({ what: `LUN ${l.name}`, r: st.liveReader(l), alloc: l.allocBlocks });
  for (const s of st.snaps.values()) if (s.state === "ready" && st.lines.has(s.line)) readers.push({ what: `snapshot ${s.name}`, r: st.snapReader(s), alloc: s.allocBlocks });
  for (const { what, r, alloc } of readers) {
    const sizeBlocks = r.size / r.blockSize;
    const beyond = dataBlocks(st, r, sizeBlocks, Number.MAX_SAFE_INTEGER);
    if (beyond.length > 0) err(`${what}: data past its size at block ${beyond[0]}`);
    const blocks = dataBlocks(st, r, 0, sizeBlocks);
    if (blocks.length !== alloc) err(`${what}: allocated-block counter ${alloc}, actual ${blocks.length}`);
    if (!isNormal(fromBlocks(blocks, r.blockSize))) err(`${what}: allocation extents not normal`);
    if (opts.deep) {
      const f = st.pool.fileSync(r.blockSize);
      const buf = new Uint8Array(r.blockSize);
      for (const b of blocks) {
        const v = st.visible(r.line, r.epoch, b);
        try {
          if (v) await f.read(v.slot, buf, 0);
        } catch (e) {
          err(`${what}: block ${b} unreadable: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    }
  }

  return {
    ok: errors.length === 0,
    errors,
    stats: {
      luns: st.luns.size,
      snapshots: [...st.snaps.values()].filter((s) => s.state === "ready").length,
      tombstones: [...st.snaps.values()].filter((s) => s.state === "deleted").length,
      groups: st.groups.size,
      records: st.meta.cat.getKeysCount(),
      entries,
      referencedSlots: refs.size,
      freeSlots,
      pendingSlots,
    },
  };
}
