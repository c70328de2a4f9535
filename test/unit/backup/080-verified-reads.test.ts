/**
 * Verified reads and healing at the repository level: a byte flipped in a pack
 * fails the image read and the base read of an incremental's partial write
 * with CORRUPT naming point, disk, range and chunk; storing the same content
 * again (a later backup) puts a good copy in a new pack, and the old point
 * then reads it, also from a freshly opened repository.
 */
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { BackupPoint } from "../../../plugin/backup/repository/catalog.js";
import { packPath } from "../../../plugin/backup/repository/chunk-store.js";
import { Repository } from "../../../plugin/backup/repository/repository.js";
import { tempDir } from "../../support/tools.js";

const CS = 4096;

function record(id: string, size: number, at: string): BackupPoint {
  return {
    version: 2, id, vm: "vm1", createdAt: at, kind: "full", t1: at, t2: at, quiesceWindowMs: 0, reverted: true,
    datastoreLunId: "l", vmDir: "/vm1", base: { groupSnapshotId: "g", name: "s1", snapshots: [] }, durationsMs: {},
    disks: [{ name: "vm1", slot: "scsi0:0", kind: "vmdk", size, stats: { bytesRead: 0, bytesWritten: 0, bytesReverted: 0 } }],
  };
}

describe("verified reads", () => {
  it("a flipped byte fails image and base reads with CORRUPT; the same content stored again heals old points", async () => {
    const tmp = tempDir("sanbox-verified-");
    try {
      const repo = await Repository.open(tmp.dir, { create: true, chunkSize: CS });
      const content = Buffer.alloc(CS);
      for (let i = 0; i < CS; i++) content[i] = (i * 7) & 0xff;
      const p1 = await repo.begin("vm1-a");
      const img = p1.image(undefined);
      await img.resize(4 * CS);
      await img.write(CS, content);
      await img.write(3 * CS, Buffer.alloc(CS, 9));
      const noise = randomBytes(CS); // incompressible: stored raw, so only the hash can catch a flip
      await img.write(2 * CS, noise);
      await p1.addDisk("vm1", await img.finish());
      await p1.commit(record("vm1-a", 4 * CS, "2026-01-01T00:00:00.000Z"));

      const point = await repo.get("vm1-a");
      const hash = (await repo.index(point, "vm1")).hashOf(1) ?? "";
      const loc = repo.chunks.locate(hash);
      if (loc === undefined) throw new Error("not indexed");
      const fd = openSync(packPath(join(tmp.dir, "packs"), loc.pack), "r+");
      const b = Buffer.alloc(1);
      readSync(fd, b, 0, 1, loc.offset + 3);
      b[0] = (b[0] as number) ^ 1;
      writeSync(fd, b, 0, 1, loc.offset + 3);
      closeSync(fd);

      const fresh = await Repository.open(tmp.dir);
      const reader = await fresh.openImage(await fresh.get("vm1-a"), "vm1");
      const err = await reader.read(CS, 10).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "CORRUPT", errno: "EIO" });
      expect(String((err as Error).message)).toContain(`point vm1-a disk vm1 bytes [${CS}, ${2 * CS})`);
      expect(String((err as Error).message)).toContain(`chunk ${hash} (pack ${loc.pack} offset ${loc.offset})`);
      // A raw (incompressible) chunk: nothing but the hash notices a flipped byte.
      const rawHash = (await repo.index(point, "vm1")).hashOf(2) ?? "";
      const rawLoc = repo.chunks.locate(rawHash);
      if (rawLoc === undefined || rawLoc.flags !== 0) throw new Error("expected a raw chunk");
      const fd2 = openSync(packPath(join(tmp.dir, "packs"), rawLoc.pack), "r+");
      writeSync(fd2, Buffer.from([(noise[100] as number) ^ 0x80]), 0, 1, rawLoc.offset + 100);
      closeSync(fd2);
      await expect(reader.read(2 * CS, 10)).rejects.toThrow(new RegExp(`chunk ${rawHash} .*hashes to [0-9a-f]{64}`));
      // Other chunks still read.
      expect((await reader.read(3 * CS, 4)).equals(Buffer.alloc(4, 9))).toBe(true);

      // An incremental writing part of that chunk must load it as its base: that read is verified too.
      const again = await Repository.open(tmp.dir);
      const p2 = await again.begin("vm1-b");
      const partial = p2.image(await again.index(await again.get("vm1-a"), "vm1"));
      await expect(partial.write(CS + 5, Buffer.from("x"))).rejects.toThrow(/CORRUPT|base of a new image/);
      await p2.abandon();

      // A later backup producing the same content stores a good copy in a new pack.
      const p3 = await again.begin("vm1-c");
      const img3 = p3.image(undefined);
      await img3.resize(4 * CS);
      await img3.write(CS, content);
      await p3.addDisk("vm1", await img3.finish());
      await p3.commit(record("vm1-c", 4 * CS, "2026-01-02T00:00:00.000Z"));
      expect(again.chunks.locate(hash)?.pack).not.toBe(loc.pack);
      const healed = await Repository.open(tmp.dir);
      const old = await healed.openImage(await healed.get("vm1-a"), "vm1");
      expect((await old.read(CS, CS)).equals(content)).toBe(true);
    } finally {
      tmp.cleanup();
    }
  });
});
