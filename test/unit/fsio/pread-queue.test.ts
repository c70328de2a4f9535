/**
 * PreadQueue: concurrent positioned reads, contiguous ones combined, must be
 * indistinguishable from plain preads (same bytes, same counts, 0 only at end
 * of file), must actually combine a queued stream, and must fail every request
 * of a failed syscall with its errno.
 */
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PreadQueue } from "../../../src/fsio/pread-queue.js";

describe("PreadQueue", () => {
  let dir: string;
  let fd: number;
  const SIZE = 300_000; // not a multiple of 4 KiB: reads cross the end of the file
  const content = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i += 4) content.writeUInt32LE((i * 2654435761) >>> 0, i);

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "sanbox-pread-"));
    writeFileSync(join(dir, "f"), content);
    fd = openSync(join(dir, "f"), "r");
  });
  afterAll(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });

  it("returns what pread would, for any mix of concurrent reads (property)", async () => {
    const read = fc.record({ pos: fc.nat({ max: SIZE + 8192 }), len: fc.integer({ min: 0, max: 200_000 }) /* both sides of SMALL_READ */ });
    const contiguousRun = fc
      .tuple(fc.nat({ max: SIZE }), fc.integer({ min: 1, max: 16_384 }), fc.integer({ min: 1, max: 40 }))
      .map(([start, len, n]) => Array.from({ length: n }, (_, i) => ({ pos: start + i * len, len })));
    await fc.assert(
      fc.asyncProperty(fc.array(read, { maxLength: 30 }), contiguousRun, fc.integer({ min: 1, max: 4 }), async (loose, run, depth) => {
        const q = new PreadQueue(fd, depth);
        const reqs = [...loose, ...run];
        const got = await Promise.all(
          reqs.map(async (r) => {
            const buf = Buffer.alloc(r.len, 0xee);
            const n = await q.read(buf, r.pos);
            return { r, buf, n };
          }),
        );
        for (const { r, buf, n } of got) {
          const expected = Math.max(0, Math.min(r.len, SIZE - r.pos));
          expect(n).toBe(expected);
          expect(buf.subarray(0, n).equals(content.subarray(r.pos, r.pos + n))).toBe(true);
          expect(buf.subarray(n).every((b) => b === 0xee)).toBe(true); // nothing written past what it reports
        }
      }),
      { numRuns: 150 },
    );
  });

  it("serves a queued sequential stream with far fewer syscalls than requests", async () => {
    const q = new PreadQueue(fd, 1);
    const bufs = Array.from({ length: 64 }, () => Buffer.alloc(4096));
    const counts = await Promise.all(bufs.map((b, i) => q.read(b, i * 4096)));
    expect(counts.every((n) => n === 4096)).toBe(true);
    expect(Buffer.concat(bufs).equals(content.subarray(0, 64 * 4096))).toBe(true);
    expect(q.stats.requests).toBe(64);
    expect(q.stats.syscalls).toBeLessThanOrEqual(2); // the first alone, the other 63 in one preadv
  });

  it("a combined read that runs past the end of the file still reports 0 only at the end", async () => {
    const q = new PreadQueue(fd, 1);
    const start = SIZE - 3 * 4096 - 100;
    const bufs = Array.from({ length: 6 }, () => Buffer.alloc(4096));
    const counts = await Promise.all(bufs.map((b, i) => q.read(b, start + i * 4096)));
    expect(counts).toEqual([4096, 4096, 4096, 100, 0, 0]);
  });

  it("fails every request of a failed syscall with its errno", async () => {
    const dfd = openSync(dir, "r"); // reading a directory fails with EISDIR
    try {
      const q = new PreadQueue(dfd, 1);
      const results = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => q.read(Buffer.alloc(512), i * 512)));
      for (const r of results) {
        expect(r.status).toBe("rejected");
        if (r.status === "rejected") expect((r.reason as NodeJS.ErrnoException).code).toBe("EISDIR");
      }
    } finally {
      closeSync(dfd);
    }
  });
});
