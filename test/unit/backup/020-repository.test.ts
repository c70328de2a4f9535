/**
 * The repository on a temp directory: an image builder against a plain Buffer
 * model (random writes, zeroing, grows and shrinks over a base image), chunk
 * dedup and zero chunks, points that share chunks, prune's garbage collection,
 * and the atomic commit under kill -9 of a child process stopped at the
 * commit's failpoint.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { execa } from "execa";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { BackupPoint } from "../../../plugin/backup/repository/catalog.js";
import type { DiskMap } from "../../../plugin/backup/repository/disk-map.js";
import { ImageBuilder } from "../../../plugin/backup/repository/image-builder.js";
import { ImageReader } from "../../../plugin/backup/repository/image-reader.js";
import { Repository } from "../../../plugin/backup/repository/repository.js";
import { tempDir } from "../../support/tools.js";

const CS = 4096;

function point(_repo: Repository, id: string, vm: string, disks: { name: string; size: number }[], createdAt = new Date().toISOString()): BackupPoint {

  return {
    version: 2,
    id,
    vm,
    createdAt,
    kind: "full",
    t1: createdAt,
    t2: createdAt,
    quiesceWindowMs: 0,
    reverted: true,
    datastoreLunId: "lun-1",
    vmDir: `/${vm}`,
    base: { groupSnapshotId: "g", name: "s1", snapshots: [] },
    durationsMs: {},
    disks: disks.map((d) => ({ name: d.name, slot: "scsi0:0", kind: "vmdk", size: d.size, stats: { bytesRead: 0, bytesWritten: 0, bytesReverted: 0 } })),
  };
}

type Op = { kind: "write"; at: number; len: number; byte: number } | { kind: "zero"; at: number; len: number } | { kind: "resize"; size: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("write" as const), at: fc.nat(6 * CS), len: fc.integer({ min: 1, max: 3 * CS }), byte: fc.integer({ min: 1, max: 255 }) }),
  // Whole, aligned chunks: the path that stores behind the queue.
  fc.record({ kind: fc.constant("write" as const), at: fc.nat(6).map((k) => k * CS), len: fc.integer({ min: 1, max: 3 }).map((k) => k * CS), byte: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant("zero" as const), at: fc.nat(6 * CS), len: fc.integer({ min: 1, max: 3 * CS }) }),
  fc.record({ kind: fc.constant("resize" as const), size: fc.nat(8 * CS) }),
);

describe("backup repository", () => {
  it("an image built over a base equals a Buffer model, and reads back through the index", async () => {
    const tmp = tempDir("sanbox-repo-model-");
    try {
      const repo = await Repository.open(tmp.dir, { create: true, chunkSize: CS });
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { maxLength: 12 }), fc.array(opArb, { maxLength: 12 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), fc.boolean(), async (first, second, maxDirty, maxStoring, together) => {
          let model = Buffer.alloc(0);
          let base: DiskMap | undefined;
          for (const ops of [first, second]) {
            const img = new ImageBuilder(repo.chunks, base, maxDirty, maxStoring);
            // `together`: every operation issued before any settles, as copyExtents does.
            const issued: Promise<void>[] = [];
            const run = async (p: Promise<void>): Promise<void> => {
              if (together) issued.push(p);
              else await p;
            };
            for (const op of ops) {
              if (op.kind === "resize") {
                const next = Buffer.alloc(op.size);
                model.copy(next, 0, 0, Math.min(model.length, op.size));
                model = next;
                await run(img.resize(op.size));
                continue;
              }
              const at = Math.min(op.at, model.length);
              const len = Math.min(op.len, model.length - at);
              if (len === 0) continue;
              if (op.kind === "write") {
                model.fill(op.byte, at, at + len);
                await run(img.write(at, Buffer.alloc(len, op.byte)));
              } else {
                model.fill(0, at, at + len);
                await run(img.zero(at, len));
              }
            }
            await Promise.all(issued);
            base = await img.finish();
            const reader = new ImageReader(repo.chunks, base);
            expect(reader.size).toBe(model.length);
            expect(Buffer.compare(await reader.read(0, model.length), model)).toBe(0);
          }
        }),
        { numRuns: 150 },
      );
    } finally {
      tmp.cleanup();
    }
  });

  it("stores identical chunks once, never stores zero chunks, and shares chunks between points", async () => {
    const tmp = tempDir("sanbox-repo-dedup-");
    try {
      const repo = await Repository.open(tmp.dir, { create: true, chunkSize: CS });
      const p1 = await repo.begin("vm1-a");
      const img = p1.image(undefined);
      await img.resize(8 * CS);
      await img.write(0, Buffer.alloc(CS, 7));
      await img.write(2 * CS, Buffer.alloc(CS, 7)); // same content as chunk 0
      await img.write(4 * CS, Buffer.alloc(CS, 9));
      const idx = await img.finish();
      // Only the non-zero chunks are listed (3 of 8).
      expect(idx.count).toBe(3);
      expect(idx.hashOf(0)).toBe(idx.hashOf(2));
      await p1.addDisk("vm1", idx);
      await p1.commit(point(repo, "vm1-a", "vm1", [{ name: "vm1", size: 8 * CS }], "2026-01-01T00:00:00.000Z"));
      expect(repo.chunks.list()).toHaveLength(2);

      // An incremental point: one chunk changed; the others are shared.
      const p2 = await repo.begin("vm1-b");
      const img2 = p2.image(await repo.index(await repo.get("vm1-a"), "vm1"));
      await img2.write(4 * CS + 10, Buffer.from("changed"));
      const idx2 = await img2.finish();
      await p2.addDisk("vm1", idx2);
      await p2.commit(point(repo, "vm1-b", "vm1", [{ name: "vm1", size: 8 * CS }], "2026-01-02T00:00:00.000Z"));
      expect(idx2.hashOf(0)).toBe(idx.hashOf(0));
      expect(idx2.hashOf(4)).not.toBe(idx.hashOf(4));
      expect(repo.chunks.list()).toHaveLength(3);
      expect((await repo.list("vm1")).map((p) => p.id)).toEqual(["vm1-a", "vm1-b"]);
      expect((await repo.get("vm1@latest")).id).toBe("vm1-b");

      // Prune keeps the newest point and frees the chunk only the old one used.
      const report = await repo.prune(1);
      expect(report.removedPoints).toEqual(["vm1-a"]);
      expect(report.freedChunks).toBe(1);
      const r = await repo.openImage(await repo.get("vm1-b"), "vm1");
      expect((await r.read(4 * CS + 10, 7)).toString()).toBe("changed");
      for (const h of repo.chunks.list()) expect(await repo.chunks.check(h)).toBeUndefined();
    } finally {
      tmp.cleanup();
    }
  });

  it("cleanup removes only tmp/ entries whose owner is gone: a live backup's entry (another VM's) stays", async () => {
    const tmp = tempDir("sanbox-repo-tmp-owner-");
    try {
      const repo = await Repository.open(tmp.dir, { create: true, chunkSize: CS });
      const live = await repo.begin("vm2-running");
      // A killed run's entry: its owner file names a pid no process has.
      await (await Repository.open(tmp.dir)).begin("vm1-dead");
      writeFileSync(join(tmp.dir, "tmp", "vm1-dead.owner"), "2147483646");
      mkdirSync(join(tmp.dir, "tmp", "vm3-ownerless"));
      const other = await Repository.open(tmp.dir);
      expect((await other.cleanup()).sort()).toEqual(["vm1-dead", "vm3-ownerless"]);
      expect(readdirSync(join(tmp.dir, "tmp")).sort()).toEqual(["vm2-running", "vm2-running.owner"]);
      await live.abandon();
      expect(readdirSync(join(tmp.dir, "tmp"))).toEqual([]);
    } finally {
      tmp.cleanup();
    }
  });

  it("a kill -9 at the commit leaves no partial point; the next run cleans up", async () => {
    const tmp = tempDir("sanbox-repo-crash-");
    try {
      const repo = await Repository.open(tmp.dir, { create: true, chunkSize: CS });
      const p1 = await repo.begin("vm1-a");
      const img = p1.image(undefined);
      await img.resize(2 * CS);
      await img.write(0, Buffer.alloc(CS, 1));
      await p1.addDisk("vm1", await img.finish());
      await p1.commit(point(repo, "vm1-a", "vm1", [{ name: "vm1", size: 2 * CS }], "2026-01-01T00:00:00.000Z"));

      const mod = resolve(import.meta.dirname, "..", "..", "..", "dist", "plugin", "backup", "repository", "repository.js");
      expect(existsSync(mod), "run the build first (npm test builds dist/)").toBe(true);
      const script = `
        const { Repository } = await import(${JSON.stringify(mod)});
        const repo = await Repository.open(${JSON.stringify(tmp.dir)});
        const p = await repo.begin("vm1-b");
        const img = p.image(undefined);
        await img.resize(${2 * CS});
        await img.write(0, Buffer.alloc(${CS}, 2));
        await p.addDisk("vm1", await img.finish());
        await p.commit(${JSON.stringify(point(repo, "vm1-b", "vm1", [{ name: "vm1", size: 2 * CS }]))});
      `;
      const child = execa("node", ["--input-type=module", "-e", script], { env: { SANBOX_FAILPOINTS: "before-rename" }, reject: false, buffer: false, stderr: "pipe" });
      await new Promise<void>((res, rej) => {
        let err = "";
        child.stderr.on("data", (d: Buffer) => {
          err += d.toString();
          if (err.includes("failpoint before-rename")) res();
        });
        void child.then((r) => rej(new Error(`child exited before the failpoint: ${err} ${String(r.exitCode)}`)));
      });
      child.kill("SIGKILL");
      await child;
      expect(readdirSync(join(tmp.dir, "tmp")).sort()).toEqual(["vm1-b", "vm1-b.owner"]);
      const again = await Repository.open(tmp.dir);
      expect((await again.list()).map((p) => p.id)).toEqual(["vm1-a"]);
      expect(await again.cleanup()).toEqual(["vm1-b"]);
      expect(readdirSync(join(tmp.dir, "tmp"))).toEqual([]);
      // The orphaned chunk goes at the next prune.
      expect(again.chunks.list()).toHaveLength(2);
      const report = await again.prune(5);
      expect(report.freedChunks).toBe(1);
      const r = await again.openImage(await again.get("vm1-a"), "vm1");
      expect((await r.read(0, CS)).equals(Buffer.alloc(CS, 1))).toBe(true);
    } finally {
      tmp.cleanup();
    }
  });
});
