/**
 * Scale: a 16 TiB thin disk with a few MiB written, at 64 KiB chunks (268M
 * chunks), built, finished, listed, restored to a sparse file and queried for
 * block status. Time and memory must follow the data written, not the disk
 * size: any loop or array over every chunk of the disk makes this test time out
 * or blow the heap bound.
 */
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { RepositoryBackend } from "../../../plugin/backup/repository-backend.js";
import { ImageReader } from "../../../plugin/backup/repository/image-reader.js";
import { Repository } from "../../../plugin/backup/repository/repository.js";
import { restoreImage } from "../../../plugin/backup/restore.js";
import type { BackupPoint } from "../../../plugin/backup/repository/catalog.js";
import { NBD_META_BASE_ALLOCATION } from "../../../src/nbd/constants.js";
import { tempDir } from "../../support/tools.js";

const TiB = 1024 ** 4;
const SIZE = 16 * TiB;
const CS = 64 * 1024;

describe("a 16 TiB thin disk", () => {
  it("builds, lists, restores sparsely and answers block status in time and memory set by the data", async () => {
    const tmp = tempDir("sanbox-thin-");
    try {
      const started = Date.now();
      const heapBefore = process.memoryUsage().heapUsed;
      const repo = await Repository.open(join(tmp.dir, "repo"), { create: true, chunkSize: CS });
      const pending = await repo.begin("vm1-thin");
      const img = pending.image(undefined);
      await img.resize(SIZE);
      // 4 MiB written at the start, in the middle and at the very end (a partial write into the last chunk too).
      const data = Buffer.alloc(1024 * 1024);
      for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
      const at = [0, SIZE / 2 + 12345, SIZE - 2 * data.length, SIZE - data.length];
      for (const o of at) await img.write(o, data);
      const map = await img.finish();
      expect(map.size).toBe(SIZE);
      expect(map.count).toBeLessThanOrEqual(4 * 17 + 1);
      await pending.addDisk("vm1", map);
      const createdAt = new Date().toISOString();
      const point: BackupPoint = {
        version: 2, id: "vm1-thin", vm: "vm1", createdAt, kind: "full", t1: createdAt, t2: createdAt, quiesceWindowMs: 0, reverted: true,
        datastoreLunId: "l", vmDir: "/vm1", base: { groupSnapshotId: "g", name: "s1", snapshots: [] }, durationsMs: {},
        disks: [{ name: "vm1", slot: "scsi0:0", kind: "vmdk", size: SIZE, stats: { bytesRead: 0, bytesWritten: 0, bytesReverted: 0 } }],
      };
      await pending.commit(point);

      // An incremental over it: one small partial write reads one base chunk; the map stays small.
      const p2 = await repo.begin("vm1-thin-2");
      const img2 = p2.image(await repo.index(point, "vm1"));
      await img2.write(SIZE / 2 + 12345 + 100, Buffer.from("changed"));
      const map2 = await img2.finish();
      expect(map2.count).toBe(map.count);

      const again = await Repository.open(join(tmp.dir, "repo"));
      expect((await again.list()).map((p) => p.id)).toEqual(["vm1-thin"]);
      const reader = await again.openImage(await again.get("vm1-thin"), "vm1");
      expect((await reader.read(SIZE / 2 + 12345, 16)).equals(data.subarray(0, 16))).toBe(true);
      expect((await reader.read(SIZE / 4, 16)).equals(Buffer.alloc(16))).toBe(true);

      const backend = new RepositoryBackend(reader, "thin");
      const status = await backend.blockStatus(NBD_META_BASE_ALLOCATION, 0, SIZE);
      expect(status.reduce((n, e) => n + e.length, 0)).toBe(SIZE);
      expect(status.length).toBeLessThan(20);

      // ext4 caps a file at 16 TiB − 4 KiB; tmpfs takes a 16 TiB sparse file.
      const shm = existsSync("/dev/shm") ? mkdtempSync("/dev/shm/sanbox-thin-") : undefined;
      const out = join(shm ?? tmp.dir, "thin.raw");
      const r = await restoreImage(reader, { kind: "file", path: out });
      expect(r.size).toBe(SIZE);
      const st = statSync(out);
      expect(st.size).toBe(SIZE);
      expect(st.blocks * 512).toBeLessThan(64 * 1024 * 1024);
      if (shm !== undefined) rmSync(shm, { recursive: true, force: true });
      const check = new ImageReader(repo.chunks, map2); // p2 is not committed: only its own store knows the new chunk
      expect((await check.read(SIZE / 2 + 12345 + 100, 7)).toString()).toBe("changed");

      expect(Date.now() - started).toBeLessThan(20_000);
      expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(256 * 1024 * 1024);
    } finally {
      tmp.cleanup();
    }
  }, 60_000);
});
