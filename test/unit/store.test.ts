// Unit tests of the array block store: API behaviour, typed errors, and "errors change nothing".
import { mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from "../../src/nbd/constants.js";
import { ArrayStore } from "../../simulator/array/index.js";

let dir: string;
let store: ArrayStore;
const KiB = 1024;
const MiB = 1024 * KiB;
/** base:allocation state of a hole (Volume.blockStatus speaks NBD state bits). */
const HOLE = NBD_STATE_HOLE | NBD_STATE_ZERO;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sanbox-store-"));
  store = await ArrayStore.open(dir, { strict: true });
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe("ArrayStore", () => {
  it("creates thin LUNs up to 64 TiB with NAA ids; idempotent by name", async () => {
    const a = await store.createLun({ name: "big", size: 64 * 2 ** 40 });
    expect(a.naa).toMatch(/^naa\.6[0-9a-f]{31}$/);
    expect(a.blockSize).toBe(64 * KiB);
    expect(a.allocatedBytes).toBe(0);
    expect((await store.createLun({ name: "big", size: 64 * 2 ** 40 })).id).toBe(a.id);
    await expect(store.createLun({ name: "big", size: MiB })).rejects.toMatchObject({ code: "ALREADY_EXISTS" });
    const v = store.openVolume({ lun: "big" });
    await v.write(40 * 2 ** 40 + 5, Buffer.from("hello"));
    expect((await v.read(40 * 2 ** 40, 16)).subarray(5, 10).toString()).toBe("hello");
    expect(store.getLun("big").allocatedBytes).toBe(64 * KiB);
    expect(v.blockStatus(40 * 2 ** 40 - 64 * KiB, 3 * 64 * KiB)).toEqual([
      { offset: 40 * 2 ** 40 - 64 * KiB, length: 64 * KiB, flag: HOLE },
      { offset: 40 * 2 ** 40, length: 64 * KiB, flag: 0 },
      { offset: 40 * 2 ** 40 + 64 * KiB, length: 64 * KiB, flag: HOLE },
    ]);
  });

  it("rejects bad arguments with typed errors and changes nothing", async () => {
    await expect(store.createLun({ name: "x", size: -1 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(store.createLun({ name: "x", size: 1000 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(store.createLun({ name: "x", size: MiB, blockSize: 3000 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(store.createLun({ name: "bad name", size: MiB })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(store.listLuns()).toEqual([]);
    await expect(store.deleteLun("nope")).rejects.toMatchObject({ code: "NOT_FOUND" });
    await store.createLun({ name: "a", size: MiB, blockSize: 4 * KiB });
    await store.createLun({ name: "b", size: MiB, blockSize: 4 * KiB });
    const sb = await store.createSnapshot({ lun: "b", name: "sb" });
    await expect(store.revertLun("a", sb.id)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(store.resizeLun("a", 1234)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(store.deleteLun("b")).rejects.toMatchObject({ code: "FAILED_PRECONDITION" });
    const g = await store.createGroupSnapshot({ name: "g", luns: ["a", "b"] });
    const member = g.members[0];
    await expect(store.deleteSnapshot(member?.id ?? "")).rejects.toMatchObject({ code: "FAILED_PRECONDITION" });
    expect(store.getGroupSnapshot(g.id).members).toHaveLength(2);
    await expect(store.openVolume({ snapshot: sb.id }).write(0, Buffer.alloc(1))).rejects.toMatchObject({ code: "READ_ONLY" });
    await expect(store.openVolume({ lun: "a" }).write(MiB - 1, Buffer.alloc(2))).rejects.toMatchObject({ code: "OUT_OF_RANGE" });
    await expect(store.createSnapshot({ lun: "a", name: "sb" })).rejects.toMatchObject({ code: "ALREADY_EXISTS" });
    expect((await store.createSnapshot({ lun: "b", name: "sb" })).id).toBe(sb.id);
    await store.deleteGroupSnapshot(g.id);
    expect((await store.check()).ok).toBe(true);
  });

  it("fails writes past capacity with NoSpace and harms nothing", async () => {
    await store.close();
    store = await ArrayStore.open(dir, { strict: true, capacityBytes: 64 * KiB });
    await store.createLun({ name: "a", size: MiB, blockSize: 4 * KiB });
    const v = store.openVolume({ lun: "a" });
    const first = pattern(64 * KiB, 1);
    await v.write(0, first);
    await expect(v.write(64 * KiB, Buffer.alloc(4 * KiB, 1))).rejects.toMatchObject({ code: "NO_SPACE", errno: "ENOSPC" });
    // overwriting in place needs no new space
    await v.write(0, pattern(4 * KiB, 9));
    expect((await v.read(4 * KiB, 60 * KiB)).equals(first.subarray(4 * KiB))).toBe(true);
    // a snapshot pins the blocks: a redirect needs space and fails cleanly
    await store.createSnapshot({ lun: "a", name: "s" });
    await expect(v.write(0, Buffer.alloc(8 * KiB, 7))).rejects.toMatchObject({ code: "NO_SPACE" });
    expect((await v.read(0, 4 * KiB)).equals(pattern(4 * KiB, 9))).toBe(true);
    expect(store.poolInfo()).toMatchObject({ capacityBytes: 64 * KiB, usedBytes: 64 * KiB, freeBytes: 0 });
    expect((await store.check()).ok).toBe(true);
  });

  it("reuses trimmed space on a full pool without an explicit flush", async () => {
    await store.close();
    store = await ArrayStore.open(dir, { strict: true, capacityBytes: 64 * KiB });
    await store.createLun({ name: "a", size: MiB, blockSize: 4 * KiB });
    const v = store.openVolume({ lun: "a" });
    await v.write(0, pattern(64 * KiB, 1));
    await v.trim(0, 64 * KiB); // freed slots are pending until a sync
    await v.write(128 * KiB, pattern(64 * KiB, 2));
    expect((await v.read(128 * KiB, 64 * KiB)).equals(pattern(64 * KiB, 2))).toBe(true);
    expect((await v.read(0, 64 * KiB)).equals(Buffer.alloc(64 * KiB))).toBe(true);
    expect((await store.check()).ok).toBe(true);
  });

  it("snapshots, revert, clone, CBT, reclaim", async () => {
    await store.createLun({ name: "a", size: MiB, blockSize: 4 * KiB });
    const v = store.openVolume({ lun: "a" });
    await v.write(0, pattern(64 * KiB, 1));
    const s1 = await store.createSnapshot({ lun: "a", name: "s1" });
    await v.write(8 * KiB + 100, Buffer.from("x"));
    await v.trim(16 * KiB, 8 * KiB);
    await v.write(512 * KiB, pattern(4 * KiB, 2));
    const d = store.changedExtents(s1.id, { lun: "a" });
    expect(d.extents).toEqual([
      { offset: 8 * KiB, length: 4 * KiB, flag: "DATA" },
      { offset: 16 * KiB, length: 8 * KiB, flag: "ZERO" },
      { offset: 512 * KiB, length: 4 * KiB, flag: "DATA" },
    ]);
    const snapVol = store.openVolume({ snapshot: s1.id });
    expect((await snapVol.read(0, 64 * KiB)).equals(pattern(64 * KiB, 1))).toBe(true);
    const s2 = await store.createSnapshot({ lun: "a", name: "s2" });
    expect(store.snapshotExclusiveBytes(s1.id)).toBe(3 * 4 * KiB);
    const used = store.poolInfo().usedBytes;
    await store.deleteSnapshot(s1.id);
    await store.flush();
    expect(store.poolInfo().usedBytes).toBe(used - 3 * 4 * KiB);
    // CBT from the tombstone still works
    expect(store.changedExtents(s1.id, { snapshot: s2.id }).extents).toEqual(d.extents);
    const c = await store.cloneSnapshot({ snapshot: s2.id, name: "c" });
    const cv = store.openVolume({ lun: c.id });
    expect((await cv.read(512 * KiB, 4 * KiB)).equals(pattern(4 * KiB, 2))).toBe(true);
    await cv.write(0, Buffer.alloc(4 * KiB, 5));
    expect(store.changedExtents(s2.id, { lun: c.id }).extents).toEqual([{ offset: 0, length: 4 * KiB, flag: "DATA" }]);
    await expect(store.deleteSnapshot(s2.id)).resolves.toBeUndefined(); // pinned by the clone, hidden from the user
    expect(() => store.getSnapshot(s2.id)).toThrow(/not found/);
    expect((await cv.read(512 * KiB, 4 * KiB)).equals(pattern(4 * KiB, 2))).toBe(true);
    const s3 = await store.createSnapshot({ lun: "a", name: "s3" });
    await v.write(0, Buffer.alloc(64 * KiB, 3));
    await store.revertLun("a", s3.id);
    expect((await v.read(0, 8 * KiB)).equals(pattern(8 * KiB, 1))).toBe(true);
    await store.deleteLun(c.id);
    await store.deleteSnapshot(s3.id);
    await store.deleteLun("a");
    await store.flush();
    expect(store.poolInfo().usedBytes).toBe(0);
    expect((await store.check()).ok).toBe(true);
  });
});

describe("ArrayStore recovery", () => {
  it("removes an incomplete group snapshot (crash between intent and cut) on open", async () => {
    await store.createLun({ name: "a", size: MiB, blockSize: 4 * KiB });
    await store.close();
    const { open } = await import("lmdb");
    const root = open({ path: join(dir, "meta.lmdb") });
    const cat = root.openDB("cat", {});
    await cat.put(["group", "grp-crashed"], { id: "grp-crashed", name: "g", lunIds: [], snapshotIds: [], state: "incomplete", createdAt: new Date().toISOString() });
    await root.close();
    store = await ArrayStore.open(dir, { strict: true });
    expect(store.listGroupSnapshots()).toEqual([]);
    const g = await store.createGroupSnapshot({ name: "g", luns: ["a"] });
    expect(g.members).toHaveLength(1);
    expect((await store.check()).ok).toBe(true);
  });
});

describe("ArrayStore concurrency", () => {
  it("applies overlapping concurrent writes, zeroes and trims in arrival order", async () => {
    await store.createLun({ name: "c", size: 256 * KiB, blockSize: 4 * KiB });
    const v = store.openVolume({ lun: "c" });
    const model = Buffer.alloc(256 * KiB);
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 20; round++) {
      const pending: Promise<void>[] = [];
      for (let i = 0; i < 32; i++) {
        const off = rand(256 * KiB - 1);
        const len = 1 + rand(Math.min(20 * KiB, 256 * KiB - off));
        const kind = rand(4);
        if (kind === 0) {
          pending.push(v.zero(off, len));
          model.fill(0, off, off + len);
        } else if (kind === 1) {
          pending.push(v.trim(off, len, { fua: true }));
          model.fill(0, off, off + len);
        } else {
          const d = pattern(len, round * 100 + i);
          pending.push(v.write(off, d));
          d.copy(model, off);
        }
      }
      if (round % 5 === 4) pending.push(store.createSnapshot({ lun: "c", name: `r${round}` }).then(() => undefined));
      await Promise.all(pending);
      expect((await v.read(0, 256 * KiB)).equals(model)).toBe(true);
    }
    expect((await store.check({ deep: true })).ok).toBe(true);
  });
});

describe("ArrayStore on a full file system", () => {
  it("a write the device refuses (ENOSPC) fails with NO_SPACE and changes nothing", async () => {
    const d = await mkdtemp(join(tmpdir(), "sanbox-store-full-"));
    // /dev/full answers every write with ENOSPC and reads as zeros: the data file of
    // 64 KiB blocks lives on a "device" that is always full.
    await symlink("/dev/full", join(d, "blocks-65536.dat"));
    const s = await ArrayStore.open(d, { strict: true });
    try {
      await s.createLun({ name: "a", size: 4 * MiB });
      const v = s.openVolume({ lun: "a" });
      await expect(v.write(0, pattern(128 * KiB, 1))).rejects.toMatchObject({ code: "NO_SPACE", errno: "ENOSPC" });
      expect(s.getLun("a").allocatedBytes).toBe(0);
      expect(v.blockStatus(0, 4 * MiB)).toEqual([{ offset: 0, length: 4 * MiB, flag: HOLE }]);
      expect((await v.read(0, 128 * KiB)).equals(Buffer.alloc(128 * KiB))).toBe(true);
      // Zeroing whole blocks needs no data space, so it still works on a full disk.
      await v.zero(0, 64 * KiB);
      expect(s.getLun("a").allocatedBytes).toBe(0);
    } finally {
      // The final sync fails here only because /dev/full cannot fdatasync (a full
      // disk can); close reports it and still closes every file.
      await expect(s.close()).rejects.toThrow(/fdatasync/);
    }
    // On a sane disk again, the store reopens (strict: the checker runs) with the LUN empty.
    await rm(join(d, "blocks-65536.dat"));
    const again = await ArrayStore.open(d, { strict: true });
    try {
      expect(again.getLun("a").allocatedBytes).toBe(0);
      expect((await again.openVolume({ lun: "a" }).read(0, 128 * KiB)).equals(Buffer.alloc(128 * KiB))).toBe(true);
    } finally {
      await again.close();
      await rm(d, { recursive: true, force: true });
    }
  });
});
