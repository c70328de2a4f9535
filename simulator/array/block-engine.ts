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
import type { FlaggedExtent } from "../../src/extents/index.js";
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
    const take = Math.min(blockSize - within, stop - pos);
    out.push({ block, within, length: take, src, srcOff: pos - offset });
    pos += take;
  }
  return out;
}

type Action = "skip" | "inplace" | "row" | "zero";
interface Plan {
  touch: Touch;
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
function mergeOps(ops: IoOp[], blockSize: number): IoOp[] {
  const out: IoOp[] = [];
  for (const op of ops) {
    const last = out[out.length - 1];
    if (
      last &&
      last.within === 0 &&
      op.within === 0 &&
      last.buf.length % blockSize === 0 &&
      op.slot === last.slot + last.buf.length / blockSize &&
      last.buf.buffer === op.buf.buffer &&
      last.buf.byteOffset + last.buf.length === op.buf.byteOffset
    ) {
      out[out.length - 1] = { slot: last.slot, within: 0, buf: new Uint8Array(last.buf.buffer, last.buf.byteOffset, last.buf.length + op.buf.length) };
    } else out.push(op);
  }
  return out;
}

function view(touch: Touch): Uint8Array {
  return touch.src ? touch.src.subarray(touch.srcOff, touch.srcOff + touch.length) : new Uint8Array(touch.length);
}

export async function writeTouches(st: StoreState, lun: LunRecord, touches: Touch[]): Promise<void> {
  const line = lun.line;
  const liveEpoch = st.line(line).epoch;
  // The newest snapshot's epoch on this line: entries above it are the live LUN's own, entries at or below it a snapshot may share.
  const floorEpoch = st.floor(line);
  const blockSize = lun.blockSize;
  const file = st.pool.fileSync(blockSize);
  const plans: Plan[] = [];
  const first = touches[0];
  const last = touches[touches.length - 1];
  if (first === undefined || last === undefined) return;
  // One range scan for the request: newest entry <= liveEpoch (the live one if above
  // the floor) and newest <= floorEpoch (what the live LUN sees below its live interval).
  const firstBlock = first.block;
  const endBlock = last.block + 1;
  const scan = st.meta.latestRange(line, firstBlock, endBlock, [liveEpoch, floorEpoch], 4 * (endBlock - firstBlock) + 16);
  let below: (Visible | undefined)[] | null = null; // parent view, computed on first need
  for (const touch of touches) {
    let cur: { epoch: number; slot: number } | undefined;
    let visSlot: number;
    if (scan) {
      const top = scan[0]?.[touch.block - firstBlock];
      cur = top && top.epoch > floorEpoch ? top : undefined;
      const low = scan[1]?.[touch.block - firstBlock];
      if (cur) visSlot = cur.slot;
      else if (low) visSlot = low.slot;
      else {
        const parent = st.line(line).parent;
        if (!parent) visSlot = 0;
        else {
          below ??= st.visibleRange(parent.line, parent.epoch, firstBlock, endBlock);
          visSlot = below[touch.block - firstBlock]?.slot ?? 0;
        }
      }
    } else {
      cur = st.meta.latest(line, touch.block, liveEpoch, floorEpoch);
      visSlot = cur ? cur.slot : (st.visible(line, floorEpoch, touch.block)?.slot ?? 0);
    }
    const full = touch.within === 0 && touch.length === blockSize;
    let action: Action;
    if (touch.src === null && visSlot === 0) action = "skip";
    else if (touch.src === null && full) action = "zero";
    else if (cur && cur.slot > 0 && st.meta.refCount(blockSize, cur.slot) === 1) action = "inplace";
    else action = "row";
    plans.push({ touch, cur, visSlot, action, newSlot: 0 });
  }
  const rows = plans.filter((plan) => plan.action === "row");
  const slots = st.pool.allocate(blockSize, rows.length); // NoSpaceError here changes nothing
  rows.forEach((plan, index) => (plan.newSlot = slots[index] as number));
  try {
    const ops: IoOp[] = [];
    for (const plan of plans) {
      const touch = plan.touch;
      if (plan.action === "inplace") ops.push({ slot: plan.cur?.slot ?? 0, within: touch.within, buf: view(touch) });
      else if (plan.action === "row") {
        if (touch.length === blockSize && touch.src) ops.push({ slot: plan.newSlot, within: 0, buf: view(touch) });
        else {
          const buf = new Uint8Array(blockSize);
          if (plan.visSlot > 0) await file.read(plan.visSlot, buf, 0);
          if (touch.src) buf.set(view(touch), touch.within);
          else buf.fill(0, touch.within, touch.within + touch.length);
          ops.push({ slot: plan.newSlot, within: 0, buf });
        }
      }
    }
    await Promise.all(mergeOps(ops, blockSize).map((op) => file.write(op.slot, op.buf, op.within)));
  } catch (err) {
    st.pool.unallocate(blockSize, slots);
    throw fsError(err, `write to LUN ${lun.name} failed`);
  }
  // Pure in-place overwrites of live-epoch entries change no metadata: skip the transaction.
  if (!plans.some((plan) => plan.action === "row" || plan.action === "zero" || (plan.action === "inplace" && plan.cur?.epoch !== liveEpoch))) return;
  await st.commitSoon(() => {
    let delta = 0;
    for (const plan of plans) {
      const block = plan.touch.block;
      if (plan.action === "skip") continue;
      if (plan.action === "inplace") {
        const cur = plan.cur as { epoch: number; slot: number };
        if (cur.epoch !== liveEpoch) {
          st.meta.removeEntry(line, block, cur.epoch);
          st.meta.putEntry(line, block, liveEpoch, cur.slot);
        }
        continue;
      }
      if (plan.cur) {
        if (plan.cur.epoch !== liveEpoch) st.meta.removeEntry(line, block, plan.cur.epoch);
        if (plan.cur.slot > 0) st.decref(blockSize, plan.cur.slot);
      }
      st.meta.putEntry(line, block, liveEpoch, plan.action === "row" ? plan.newSlot : 0);
      if (plan.action === "row" && plan.visSlot === 0) delta++;
      if (plan.action === "zero" && plan.visSlot > 0) delta--;
    }
    const now = st.luns.get(lun.id); // re-read: concurrent writes to other blocks also adjust it
    if (delta !== 0 && now) st.saveLun({ ...now, allocBlocks: now.allocBlocks + delta });
  });
}

/**
 * Reads [offset, offset+length) of `reader` into `out` (length bytes). Returns,
 * per block of the range, whether it holds data (false: zeros, `out` zero-filled
 * there only when `fillZeros`). One mapping scan per line for the whole request;
 * reads of consecutive slots are merged into one pread.
 */
async function readInto(st: StoreState, reader: Reader, offset: number, length: number, out: Uint8Array, fillZeros: boolean): Promise<boolean[]> {
  const blockSize = reader.blockSize;
  const touches = splitRange(offset, length, blockSize, null);
  const first = touches[0];
  if (first === undefined) return [];
  const visible = st.visibleRange(reader.line, reader.epoch, first.block, first.block + touches.length);
  const ops: IoOp[] = [];
  const data: boolean[] = [];
  for (let index = 0; index < touches.length; index++) {
    const touch = touches[index] as Touch;
    const entry = visible[index];
    if (entry && entry.slot > 0) {
      ops.push({ slot: entry.slot, within: touch.within, buf: out.subarray(touch.srcOff, touch.srcOff + touch.length) });
      data.push(true);
    } else {
      if (fillZeros) out.fill(0, touch.srcOff, touch.srcOff + touch.length);
      data.push(false);
    }
  }
  if (ops.length > 0) {
    const file = st.pool.fileSync(blockSize);
    try {
      const merged = mergeOps(ops, blockSize);
      if (merged.length === 1) {
        const op = merged[0] as IoOp;
        await file.read(op.slot, op.buf, op.within);
      } else await Promise.all(merged.map((op) => file.read(op.slot, op.buf, op.within)));
    } catch (err) {
      throw new IoError(`read failed`, { cause: err });
    }
  }
  return data;
}

export async function readRange(st: StoreState, reader: Reader, offset: number, length: number): Promise<Buffer> {
  // Not zero-filled up front: every byte is either read from a slot or zeroed.
  const out = Buffer.allocUnsafeSlow(length);
  await readInto(st, reader, offset, length, out, true);
  return out;
}

/** A piece of a sparse read: data (a view of `buf`) or a hole of zeros. Offsets are absolute. */
export type SparseRun = FlaggedExtent<"data" | "hole">;

/**
 * Reads into `buf` (at least `length` bytes) and describes the range as runs of
 * data and holes (unmapped or zero blocks, whose bytes in `buf` are left as is).
 */
export async function readSparseInto(st: StoreState, reader: Reader, offset: number, length: number, buf: Uint8Array): Promise<SparseRun[]> {
  const data = await readInto(st, reader, offset, length, buf, false);
  const runs: SparseRun[] = [];
  const blockSize = reader.blockSize;
  let pos = offset;
  const stop = offset + length;
  for (const isData of data) {
    const end = Math.min(stop, (Math.floor(pos / blockSize) + 1) * blockSize);
    const flag = isData ? "data" : "hole";
    const last = runs[runs.length - 1];
    if (last && last.flag === flag) runs[runs.length - 1] = { offset: last.offset, length: last.length + end - pos, flag };
    else runs.push({ offset: pos, length: end - pos, flag });
    pos = end;
  }
  return runs;
}

/** Blocks in [firstBlock, endBlock) whose content (for `reader`) is data, sorted. Cost: O(entries in range). */
export function dataBlocks(st: StoreState, reader: Reader, firstBlock: number, endBlock: number): number[] {
  const candidates = st.candidateBlocks(reader.line, reader.epoch, firstBlock, endBlock);
  const first = candidates[0];
  const last = candidates[candidates.length - 1];
  if (first === undefined || last === undefined) return [];
  // Candidates dense in their span (sequentially written data): one batched lookup.
  if (last + 1 - first <= 2 * candidates.length + 64) {
    const visible = st.visibleRange(reader.line, reader.epoch, first, last + 1);
    return candidates.filter((block) => (visible[block - first]?.slot ?? 0) > 0);
  }
  return candidates.filter((block) => (st.visible(reader.line, reader.epoch, block)?.slot ?? 0) > 0);
}
