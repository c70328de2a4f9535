// The datastore file system's operations, one at a time, on a memory device.
import { describe, expect, it } from "vitest";
import { MemoryBackend } from "../../../src/nbd/backends/memory-backend.js";
import { Datastore } from "../../../src/datastore/datastore.js";
import { fsck } from "../../../src/datastore/fsck.js";
import { decodeSuperblock, encodeSuperblock, SUPERBLOCK_SIZE } from "../../../src/datastore/format.js";
import { crc32c } from "../../../src/datastore/crc32c.js";

const KiB = 1024;

async function fresh(blockSize = 4 * KiB, size = 1024 * KiB): Promise<{ dev: MemoryBackend; ds: Datastore }> {
  const dev = new MemoryBackend(size);
  const ds = await Datastore.format(dev, { blockSize, label: "ds1" }, { strict: true });
  return { dev, ds };
}

describe("datastore file system", () => {
  it("crc32c check value", () => {
    expect(crc32c(Buffer.from("123456789"))).toBe(0xe3069283);
  });

  it("formats to generation 1 with an empty root, default 64 KiB blocks", async () => {
    const dev = new MemoryBackend(4 * 1024 * KiB);
    const ds = await Datastore.format(dev);
    expect(ds.blockSize).toBe(64 * KiB);
    expect(ds.generation).toBe(1);
    expect(await ds.list("/")).toEqual([]);
    const r = await fsck(dev);
    expect(r.ok).toBe(true);
    expect(r.generation).toBe(1);
  });

  it("superblock round trip and torn-superblock detection", () => {
    const sb = { version: 1, blockSize: 65536, blockCount: 100, generation: 7, uuid: "0123456789abcdef0123456789abcdef", label: "x", metaLength: 99, metaChecksum: 5, metaRuns: [{ start: 3, count: 2 }] };
    const buf = encodeSuperblock(sb);
    expect(buf.length).toBe(SUPERBLOCK_SIZE);
    expect(decodeSuperblock(buf, "t")).toEqual(sb);
    const torn = Buffer.from(buf);
    torn.fill(0, 200);
    expect(() => decodeSuperblock(torn, "t")).toThrow(/checksum/);
  });

  it("thin files: holes read as zeros, unaligned writes, extent map", async () => {
    const { ds } = await fresh();
    await ds.mkdir("/vm1");
    await ds.create("/vm1/disk-flat.vmdk", { size: 64 * KiB });
    expect(await ds.extentMap("/vm1/disk-flat.vmdk")).toEqual([]);
    await ds.write("/vm1/disk-flat.vmdk", 5000, Buffer.alloc(6000, 0xab));
    const back = await ds.read("/vm1/disk-flat.vmdk", 0, 64 * KiB);
    expect(back.subarray(0, 5000).every((b) => b === 0)).toBe(true);
    expect(back.subarray(5000, 11000).every((b) => b === 0xab)).toBe(true);
    expect(back.subarray(11000).every((b) => b === 0)).toBe(true);
    const map = await ds.extentMap("/vm1/disk-flat.vmdk");
    expect(map).toHaveLength(1);
    expect(map[0]).toMatchObject({ fileOffset: 4 * KiB, length: 8 * KiB });
    expect(map[0]!.lunOffset % (4 * KiB)).toBe(0);
    expect((await ds.stat("/vm1/disk-flat.vmdk")).size).toBe(64 * KiB);
  });

  it("shrink then grow reads zeros past the old end", async () => {
    const { ds } = await fresh();
    await ds.writeFile("/f", Buffer.alloc(10000, 7));
    await ds.truncate("/f", 5000);
    await ds.truncate("/f", 10000);
    const b = await ds.readFile("/f");
    expect(b.subarray(0, 5000).every((x) => x === 7)).toBe(true);
    expect(b.subarray(5000).every((x) => x === 0)).toBe(true);
  });

  it("trim punches holes and frees whole blocks", async () => {
    const { ds } = await fresh();
    await ds.writeFile("/f", Buffer.alloc(16 * KiB, 1));
    const before = ds.usage().used;
    await ds.trim("/f", 2 * KiB, 8 * KiB); // zero 2K..4K in place, free block 1, zero 8K..10K
    expect(ds.usage().used).toBe(before - 1);
    const b = await ds.readFile("/f");
    expect(b.subarray(0, 2 * KiB).every((x) => x === 1)).toBe(true);
    expect(b.subarray(2 * KiB, 10 * KiB).every((x) => x === 0)).toBe(true);
    expect(b.subarray(10 * KiB).every((x) => x === 1)).toBe(true);
  });

  it("rename, delete, list, reopen", async () => {
    const { dev, ds } = await fresh();
    await ds.mkdir("/a/b", { parents: true });
    await ds.writeFile("/a/b/x", Buffer.from("hello"));
    await ds.rename("/a/b", "/c");
    expect((await ds.list("/")).map((e) => e.name)).toEqual(["a", "c"]);
    await expect(ds.rename("/c", "/c/d")).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(ds.delete("/c")).rejects.toMatchObject({ code: "FAILED_PRECONDITION" });
    const again = await Datastore.open(dev);
    expect((await again.readFile("/c/x")).toString()).toBe("hello");
    expect((await again.walk()).map((e) => e.path)).toEqual(["/a", "/c", "/c/x"]);
    await again.delete("/c", { recursive: true });
    expect((await again.walk()).map((e) => e.path)).toEqual(["/a"]);
    expect((await fsck(dev)).ok).toBe(true);
  });

  it("errors carry stable codes", async () => {
    const { ds } = await fresh();
    await expect(ds.read("/nope", 0, 1)).rejects.toMatchObject({ code: "NOT_FOUND" });
    await ds.create("/f");
    await expect(ds.create("/f")).rejects.toMatchObject({ code: "ALREADY_EXISTS" });
    await expect(ds.mkdir("/f/g")).rejects.toMatchObject({ code: "FAILED_PRECONDITION" });
    await expect(ds.create("/bad/../x")).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  it("fills up with NO_SPACE and recovers space after delete", async () => {
    const { ds } = await fresh(4 * KiB, 128 * KiB);
    await expect(ds.writeFile("/big", Buffer.alloc(200 * KiB, 1))).rejects.toMatchObject({ code: "NO_SPACE" });
  });

  it("a read-only device opens read-only", async () => {
    const { dev } = await fresh();
    const ro = await Datastore.open(MemoryBackend.fromBuffer(dev.contents(), { readOnly: true }));
    expect(ro.readOnly).toBe(true);
    await expect(ro.create("/x")).rejects.toMatchObject({ code: "READ_ONLY" });
  });

  it("fsck detects a damaged metadata blob and unformatted devices", async () => {
    const { dev, ds } = await fresh();
    await ds.writeFile("/f", Buffer.from("v1"));
    const image = dev.contents();
    const sb = decodeSuperblock(image.subarray(ds.generation % 2 === 0 ? 0 : 4096), "t");
    const run = sb.metaRuns[0]!;
    const at = run.start * sb.blockSize + 20;
    await dev.write(at, Buffer.from([(image[at] ?? 0) ^ 0xff]));
    const r = await fsck(dev);
    expect(r.ok).toBe(false);
    expect(r.errors.join(" ")).toMatch(/checksum/);
    await expect(Datastore.open(dev)).rejects.toMatchObject({ code: "CORRUPT" });
    const blank = await fsck(new MemoryBackend(64 * KiB));
    expect(blank.ok).toBe(false);
    expect(blank.errors[0]).toMatch(/no valid datastore superblock/);
  });

  it("a failed commit makes the instance unusable (and says so); a reopen from the LUN has the last committed state", async () => {
    const { dev, ds } = await fresh();
    await ds.writeFile("/kept", Buffer.from("committed"));
    await ds.commit();
    expect(ds.unusable).toBe(false);
    let failWrites = true;
    const flaky = {
      size: dev.size,
      readOnly: false,
      read: (o: number, n: number) => dev.read(o, n),
      write: (o: number, d: Buffer) => (failWrites ? Promise.reject(new Error("EIO from the array")) : dev.write(o, d)),
      flush: () => dev.flush(),
    };
    const onFlaky = await Datastore.open(flaky);
    // The write's own commit (auto-commit) fails on the device; from then on the instance refuses.
    await expect((async () => {
      await onFlaky.writeFile("/lost", Buffer.from("never committed"));
      await onFlaky.commit();
    })()).rejects.toThrow(/EIO/);
    expect(onFlaky.unusable).toBe(true);
    await expect(onFlaky.flush()).rejects.toThrow(/unusable after a failed commit/);
    failWrites = false;
    const again = await Datastore.open(flaky);
    expect(again.unusable).toBe(false);
    expect((await again.readFile("/kept")).toString()).toBe("committed");
  });
});
