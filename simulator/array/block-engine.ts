/**
 * Block-level read and write paths.
 *
 * Write (also WRITE_ZEROES and TRIM, which are writes of zeros that may drop whole
 * blocks to a zero entry). Per touched block, decided synchronously under the
 * block range lock and the LUN's I/O gate:
 *  - skip:    zeroing a block that already reads as zeros (no content change, so
 *             no CBT entry is needed either: the base and target agree on it);
 *  - inplace: the live interval holds the block in a slot nobody else references:
 *             overwrite it; if its entry is older than the live epoch (a deleted
 *             snapshot merged intervals) relabel it to the live epoch so CBT from a
 *             tombstone in between still sees the touch;
 *  - row:     redirect-on-write into a fresh slot (read-modify-write if partial);
 *  - zero:    full-block zero/trim: a zero entry (slot 0), the old slot is released.
 * Order: all data lands in slots first, then one LMDB transaction switches the
 * mappings. A crash in between leaves the old mapping and an unreferenced slot.
 */
import { IoError, SanboxError } from "../../src/errors.js";
import type { LunRecord } from "./records.js";
import type { Reader, StoreState } from "./store-state.js";
import type { SlotFile } from "./slot-pool.js";

/** One block's share of a request. `src` is null for zeros; `srcOff` indexes into it. */
export interface Touch {
  block: number;
  within: number;
  length: number;
  src: Uint8Array | null;
  srcOff: number;
}

export function splitRange(offset: number, length: number, blockSize: number, src: Uint8Array | null): Touch[] {
  const out: Touch[] = [];
  let pos = offset;
  const stop = offset + length;
  while (pos < stop) {
    const block = Math.floor(pos / blockSize);
    const within = pos - block * blockSize;
    const n = Math.min(blockSize - within, stop - pos);
    out.push({ block, within, length: n, src, srcOff: pos - offset });
    pos += n;
  }
  return out;
}

type Action = "skip" | "inplace" | "row" | "zero";
interface Plan {
  t: Touch;
  cur: { epoch: number; slot: number } | undefined;
  visSlot: number;
  action: Action;
  newSlot: number;
}

interface IoOp {
  slot: number;
  within: number;
  buf: Uint8Array;
}

/** Merges ops on consecutive slots whose buffers are consecutive views of one ArrayBuffer. */
function mergeOps(ops: IoOp[], bs: number): IoOp[] {
  const out: IoOp[] = [];
  for (const op of ops) {
    const last = out[out.length - 1];
    if (
      last &&
      last.within === 0 &&
      op.within === 0 &&
      last.buf.length % bs === 0 &&
      op.slot === last.slot + last.buf.length / bs &&
      last.buf.buffer === op.buf.buffer &&
      last.buf.byteOffset + last.buf.length === op.buf.byteOffset
    ) {
      out[out.length - 1] = { slot: last.slot, within: 0, buf: new Uint8Array(last.buf.buffer, last.buf.byteOffset, last.buf.length + op.buf.length) };
    } else out.push(op);
  }
  return out;
}

function view(t: Touch): Uint8Array {
  return t.src ? t.src.subarray(t.srcOff, t.srcOff + t.length) : new Uint8Array(t.length);
}

export async function writeTouches(st: StoreState, lun: LunRecord, touches: Touch[]): Promise<void> {
  const L = lun.line;
  const E = st.line(L).epoch;
  const F = st.floor(L);
  const bs = lun.blockSize;
  const file = st.pool.fileSync(bs);
  const plans: Plan[] = [];
  for (const t of touches) {
    const cur = st.meta.latest(L, t.block, E, F);
    const visSlot = cur ? cur.slot : (st.visible(L, F, t.block)?.slot ?? 0);
    const full = t.within === 0 && t.length === bs;
    let action: Action;
    if (t.src === null && visSlot === 0) action = "skip";
    else if (t.src === null && full) action = "zero";
    else if (cur && cur.slot > 0 && st.meta.refCount(bs, cur.slot) === 1) action = "inplace";
    else action = "row";
    plans.push({ t, cur, visSlot, action, newSlot: 0 });
  }
  const rows = plans.filter((p) => p.action === "row");
  const slots = st.pool.allocate(bs, rows.length); // NoSpaceError here changes nothing
  rows.forEach((p, i) => (p.newSlot = slots[i] as number));
  try {
    const ops: IoOp[] = [];
    for (const p of plans) {
      if (p.action === "inplace") ops.push({ slot: p.cur?.slot ?? 0, within: p.t.within, buf: view(p.t) });
      else if (p.action === "row") {
        if (p.t.length === bs && p.t.src) ops.push({ slot: p.newSlot, within: 0, buf: view(p.t) });
        else {
          const buf = new Uint8Array(bs);
          if (p.visSlot > 0) await file.read(p.visSlot, buf, 0);
          if (p.t.src) buf.set(view(p.t), p.t.within);
          else buf.fill(0, p.t.within, p.t.within + p.t.length);
          ops.push({ slot: p.newSlot, within: 0, buf });
        }
      }
    }
    await Promise.all(mergeOps(ops, bs).map((op) => file.write(op.slot, op.buf, op.within)));
  } catch (e) {
    st.pool.unallocate(bs, slots);
    throw e instanceof SanboxError ? e : new IoError(`write to LUN ${lun.name} failed`, { cause: e });
  }
  st.meta.txn(() => {
    let delta = 0;
    for (const p of plans) {
      const b = p.t.block;
      if (p.action === "skip") continue;
      if (p.action === "inplace") {
        const cur = p.cur as { epoch: number; slot: number };
        if (cur.epoch !== E) {
          st.meta.removeEntry(L, b, cur.epoch);
          st.meta.putEntry(L, b, E, cur.slot);
        }
        continue;
      }
      if (p.cur) {
        if (p.cur.epoch !== E) st.meta.removeEntry(L, b, p.cur.epoch);
        if (p.cur.slot > 0) st.decref(bs, p.cur.slot);
      }
      st.meta.putEntry(L, b, E, p.action === "row" ? p.newSlot : 0);
      if (p.action === "row" && p.visSlot === 0) delta++;
      if (p.action === "zero" && p.visSlot > 0) delta--;
    }
    const now = st.luns.get(lun.id); // re-read: concurrent writes to other blocks also adjust it
    if (delta !== 0 && now) st.saveLun({ ...now, allocBlocks: now.allocBlocks + delta });
  });
}

export async function readRange(st: StoreState, r: Reader, offset: number, length: number): Promise<Buffer> {
  // Not zero-filled up front: every byte is either read from a slot or zeroed below.
  const out = Buffer.allocUnsafeSlow(length);
  const file: SlotFile | undefined = length > 0 ? st.pool.fileSync(r.blockSize) : undefined;
  const ops: IoOp[] = [];
  for (const t of splitRange(offset, length, r.blockSize, null)) {
    const v = st.visible(r.line, r.epoch, t.block);
    if (v && v.slot > 0) ops.push({ slot: v.slot, within: t.within, buf: out.subarray(t.srcOff, t.srcOff + t.length) });
    else out.fill(0, t.srcOff, t.srcOff + t.length);
  }
  if (file) {
    try {
      await Promise.all(mergeOps(ops, r.blockSize).map((op) => file.read(op.slot, op.buf, op.within)));
    } catch (e) {
      throw new IoError(`read failed`, { cause: e });
    }
  }
  return out;
}

/** Blocks in [b0, b1) whose content (for reader r) is data, sorted. Cost: O(entries in range). */
export function dataBlocks(st: StoreState, r: Reader, b0: number, b1: number): number[] {
  return st.candidateBlocks(r.line, r.epoch, b0, b1).filter((b) => (st.visible(r.line, r.epoch, b)?.slot ?? 0) > 0);
}
