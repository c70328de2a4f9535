/**
 * Deleted snapshots leave no record behind (docs/store.md "Deleted snapshots",
 * issue 17): a snapshot's id carries its line and epoch (snapshot-ids.ts), so
 * after 10k creates and deletes the catalogue and the mapping entries are the size
 * they were after the first thousand, fsck is clean, and CBT from a long-deleted
 * base is still exact, also after a restart. Ids the store never issued stay
 * NOT_FOUND, and a clone-pinned snapshot keeps its record only while the clone lives.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ArrayStore } from "../../../simulator/array/index.js";

const BS = 4096;
const BLOCKS = 64;

let dir: string;
let store: ArrayStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sanbox-021-"));
  store = await ArrayStore.open(dir);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function block(seed: number): Buffer {
  return Buffer.alloc(BS, seed & 0xff);
}

/** Blocks that GetChangedBlocks reports, as block numbers. */
function changed(base: string, lun: string): number[] {
  const r = store.changedExtents(base, { lun });
  const out: number[] = [];
  for (const e of r.extents) for (let o = e.offset; o < e.offset + e.length; o += BS) out.push(o / BS);
  return out;
}

async function healthy(): Promise<{ records: number; entries: number; tombstones: number; snapshots: number }> {
  const r = await store.check({ deep: false });
  expect(r.errors).toEqual([]);
  return r.stats;
}

describe("deleted snapshots leave no record", () => {
  it("10k snapshots created and deleted: metadata stays flat, fsck clean, CBT from a deleted base exact", async () => {
    const lun = await store.createLun({ name: "a", size: BLOCKS * BS, blockSize: BS });
    const v = store.openVolume({ lun: "a" });
    const kept = (await store.createSnapshot({ lun: "a", name: "kept" })).id;
    const bases = new Map<number, string>(); // iteration -> id of the snapshot cut then (deleted later)
    let prev: string | null = null;
    let at1k: Awaited<ReturnType<typeof healthy>> | undefined;
    const N = 10_000;
    for (let i = 0; i < N; i++) {
      await v.write((i % BLOCKS) * BS, block(i));
      const s = await store.createSnapshot({ lun: "a", name: `s${i}` });
      if (i === 10 || i === 5_000 || i === N - 20) bases.set(i, s.id);
      if (prev !== null) await store.deleteSnapshot(prev);
      prev = s.id;
      if (i === 999) at1k = await healthy();
    }
    // Both samples with one rolling snapshot alive: 9k more deletes added nothing.
    const at10k = await healthy();
    expect(at1k).toBeDefined();
    expect(at10k.records).toBe(at1k?.records);
    expect(at10k.entries).toBe(at1k?.entries);
    if (prev !== null) await store.deleteSnapshot(prev);
    const end = await healthy();
    // One LUN, its line, the kept snapshot, the counters: nothing per deleted snapshot.
    expect(end.records).toBe(4);
    expect(end.tombstones).toBe(0);
    expect(end.snapshots).toBe(1);
    // Between the kept snapshot and the live LUN at most one entry per block.
    expect(end.entries).toBe(BLOCKS);

    // Base cut after iteration i's write: the blocks written in iterations i+1 .. N-1.
    const expectChanged = (i: number): number[] => [...new Set(Array.from({ length: N - 1 - i }, (_, k) => (i + 1 + k) % BLOCKS))].sort((a, b) => a - b);
    for (const [i, id] of bases) {
      expect(() => store.getSnapshot(id)).toThrow(expect.objectContaining({ code: "NOT_FOUND" }) as Error);
      expect(changed(id, lun.id)).toEqual(expectChanged(i));
    }
    expect(changed(kept, lun.id).length).toBe(BLOCKS);

    // The id key is persisted: after a restart the deleted bases still answer.
    await store.close();
    store = await ArrayStore.open(dir);
    for (const [i, id] of bases) expect(changed(id, lun.id)).toEqual(expectChanged(i));
  }, 600_000);

  it("ids the store never issued are NOT_FOUND, and a deleted base goes with its LUN", async () => {
    const lun = await store.createLun({ name: "a", size: BLOCKS * BS, blockSize: BS });
    const s = await store.createSnapshot({ lun: "a", name: "s" });
    expect(s.id).toMatch(/^snap-[0-9a-f]{36}$/);
    await store.deleteSnapshot(s.id);
    expect(changed(s.id, lun.id)).toEqual([]);
    const last = s.id.slice(-1) === "0" ? "1" : "0";
    for (const bad of [`${s.id.slice(0, -1)}${last}`, "snap-0123456789abcdef", `snap-${"0".repeat(36)}`, `${s.id}0`]) {
      expect(() => store.changedExtents(bad, { lun: lun.id })).toThrow(expect.objectContaining({ code: "NOT_FOUND" }) as Error);
    }
    // Another store's key does not accept this store's ids.
    const other = await mkdtemp(join(tmpdir(), "sanbox-021-other-"));
    const o = await ArrayStore.open(other);
    try {
      const ol = await o.createLun({ name: "a", size: BLOCKS * BS, blockSize: BS });
      await o.createSnapshot({ lun: "a", name: "s" });
      expect(() => o.changedExtents(s.id, { lun: ol.id })).toThrow(expect.objectContaining({ code: "NOT_FOUND" }) as Error);
    } finally {
      await o.close();
      await rm(other, { recursive: true, force: true });
    }
    await store.deleteLun(lun.id);
    expect(() => store.changedExtents(s.id, { lun: lun.id })).toThrow(expect.objectContaining({ code: "NOT_FOUND" }) as Error);
    expect((await healthy()).records).toBe(1);
  });

  it("a clone keeps its deleted origin's record; the last clone's delete drops it, CBT from it still answers", async () => {
    const lun = await store.createLun({ name: "a", size: BLOCKS * BS, blockSize: BS });
    const v = store.openVolume({ lun: "a" });
    await v.write(0, block(1));
    const s = await store.createSnapshot({ lun: "a", name: "s" });
    const c = await store.cloneSnapshot({ snapshot: s.id, name: "c" });
    await store.deleteSnapshot(s.id);
    expect((await healthy()).tombstones).toBe(1);
    await v.write(3 * BS, block(2));
    expect(changed(s.id, lun.id)).toEqual([3]);
    await store.deleteLun(c.id);
    const st = await healthy();
    expect(st.tombstones).toBe(0);
    expect(st.records).toBe(3);
    expect(changed(s.id, lun.id)).toEqual([3]);
  });
});
