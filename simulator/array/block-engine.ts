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
 * Order: all data lands in slots first, then one LMDB transaction (shared with the
 * requests that got there in the same event-loop turn: StoreState.commitSoon)
 * switches the mappings. A crash in between leaves the old mapping and an
 * unreferenced slot. Per request, not per block: one mapping range scan, one
 * allocation, one pread/pwrite per run of consecutive slots.
 */
import { IoError, fsError } from "../../src/errors.js";
import type { LunRecord } from "./records.js";
import type { Reader, StoreState, Visible } from "./store-state.js";

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
  const first = touches[0];
  const last = touches[touches.length - 1];
  if (first === undefined || last === undefined) return;
  // One range scan for the request: newest entry <= E (the live one if above F)
  // and newest <= F (what the live LUN sees below its live interval).
  const b0 = first.block;
  const b1 = last.block + 1;
  const scan = st.meta.latestRange(L, b0, b1, [E, F], 4 * (b1 - b0) + 16);
  let below: (Visible | undefined)[] | null = null; // parent view, computed on first need
  for (const t of touches) {
    let cur: { epoch: number; slot: number } | undefined;
    let visSlot: number;
    if (scan) {
      const top = scan[0]?.[t.block - b0];
      cur = top && top.epoch > F ? top : undefined;
      const low = scan[1]?.[t.block - b0];
      if (cur) visSlot = cur.slot;
      else if (low) visSlot = low.slot;
      else {
        const parent = st.line(L).parent;
        if (!parent) visSlot = 0;
        else {
          below ??= st.visibleRange(parent.line, parent.epoch, b0, b1);
          visSlot = below[t.block - b0]?.slot ?? 0;
        }
      }
    } else {
      cur = st.meta.latest(L, t.block, E, F);
      visSlot = cur ? cur.slot : (st.visible(L, F, t.block)?.slot ?? 0);
    }
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
    throw fsError(e, `write to LUN ${lun.name} failed`);
  }
  // Pure in-place overwrites of live-epoch entries change no metadata: skip the transaction.
  if (!plans.some((p) => p.action === "row" || p.action === "zero" || (p.action === "inplace" && p.cur?.epoch !== E))) return;
  await st.commitSoon(() => {
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

/**
 * Reads [offset, offset+length) of reader `r` into `out` (length bytes). Returns,
 * per block of the range, whether it holds data (false: zeros, `out` zero-filled
 * there only when `fillZeros`). One mapping scan per line for the whole request;
 * reads of consecutive slots are merged into one pread.
 */
async function readInto(st: StoreState, r: Reader, offset: number, length: number, out: Uint8Array, fillZeros: boolean): Promise<boolean[]> {
  const bs = r.blockSize;
  const touches = splitRange(offset, length, bs, null);
  const first = touches[0];
  if (first === undefined) return [];
  const vis = st.visibleRange(r.line, r.epoch, first.block, first.block + touches.length);
  const ops: IoOp[] = [];
  const data: boolean[] = [];
  for (let i = 0; i < touches.length; i++) {
    const t = touches[i] as Touch;
    const v = vis[i];
    if (v && v.slot > 0) {
      ops.push({ slot: v.slot, within: t.within, buf: out.subarray(t.srcOff, t.srcOff + t.length) });
      data.push(true);
    } else {
      if (fillZeros) out.fill(0, t.srcOff, t.srcOff + t.length);
      data.push(false);
    }
  }
  if (ops.length > 0) {
    const file = st.pool.fileSync(bs);
    try {
      const merged = mergeOps(ops, bs);
      if (merged.length === 1) {
        const op = merged[0] as IoOp;
        await file.read(op.slot, op.buf, op.within);
      } else await Promise.all(merged.map((op) => file.read(op.slot, op.buf, op.within)));
    } catch (e) {
      throw new IoError(`read failed`, { cause: e });
    }
  }
  return data;
}

export async function readRange(st: StoreState, r: Reader, offset: number, length: number): Promise<Buffer> {
  // Not zero-filled up front: every byte is either read from a slot or zeroed.
  const out = Buffer.allocUnsafeSlow(length);
  await readInto(st, r, offset, length, out, true);
  return out;
}

/** A piece of a sparse read: data (a view of `buf`) or a hole of zeros. Offsets are absolute. */
export type SparseRun = { offset: number; length: number; hole: boolean };

/**
 * Reads into `buf` (at least `length` bytes) and describes the range as runs of
 * data and holes (unmapped or zero blocks, whose bytes in `buf` are left as is).
 */
export async function readSparseInto(st: StoreState, r: Reader, offset: number, length: number, buf: Uint8Array): Promise<SparseRun[]> {
  const data = await readInto(st, r, offset, length, buf, false);
  const runs: SparseRun[] = [];
  const bs = r.blockSize;
  let pos = offset;
  const stop = offset + length;
  for (const isData of data) {
    const end = Math.min(stop, (Math.floor(pos / bs) + 1) * bs);
    const last = runs[runs.length - 1];
    if (last && last.hole === !isData) last.length += end - pos;
    else runs.push({ offset: pos, length: end - pos, hole: !isData });
    pos = end;
  }
  return runs;
}

/** Blocks in [b0, b1) whose content (for reader r) is data, sorted. Cost: O(entries in range). */
export function dataBlocks(st: StoreState, r: Reader, b0: number, b1: number): number[] {
  const cand = st.candidateBlocks(r.line, r.epoch, b0, b1);
  const first = cand[0];
  const last = cand[cand.length - 1];
  if (first === undefined || last === undefined) return [];
  // Candidates dense in their span (sequentially written data): one batched lookup.
  if (last + 1 - first <= 2 * cand.length + 64) {
    const vis = st.visibleRange(r.line, r.epoch, first, last + 1);
    return cand.filter((b) => (vis[b - first]?.slot ?? 0) > 0);
  }
  return cand.filter((b) => (st.visible(r.line, r.epoch, b)?.slot ?? 0) > 0);
}
