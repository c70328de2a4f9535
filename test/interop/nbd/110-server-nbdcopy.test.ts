/**
 * nbdcopy into and out of our server: bytes survive the round trip (sha256),
 * on the memory and the file backend, with --flush, and a sparse source stays
 * sparse on our side.
 */
import { createHash, randomBytes } from "node:crypto";
import { openSync, closeSync, readFileSync, statSync, writeFileSync, writeSync, ftruncateSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileBackend } from "../../../src/nbd/backends/file-backend.js";
import { startServer } from "../../support/nbd-server.js";
import { tempDir, tool } from "../../support/tools.js";

const MiB = 1024 * 1024;
const SIZE = 32 * MiB;

const sha256 = (path: string): string => createHash("sha256").update(readFileSync(path)).digest("hex");

interface MapEntry {
  offset: number;
  length: number;
  type: number;
}

describe("nbdcopy against our server", () => {
  let dir: string;
  let cleanup: () => void;
  let src: string;
  beforeAll(() => {
    ({ dir, cleanup } = tempDir("sanbox-nbdcopy-"));
    src = join(dir, "random.img");
    writeFileSync(src, randomBytes(SIZE));
  });
  afterAll(() => cleanup());

  it("round-trips 32 MiB of random data through the memory backend", async () => {
    const s = await startServer({ size: SIZE });
    try {
      await tool("nbdcopy", [src, s.uri]);
      const out = join(dir, "back-mem.img");
      await tool("nbdcopy", [s.uri, out]);
      expect(sha256(out)).toBe(sha256(src));
      expect((await s.backend.read(SIZE - 4096, 4096)).equals(readFileSync(src).subarray(SIZE - 4096))).toBe(true);
    } finally {
      await s.stop();
    }
  });

  it("round-trips through the file backend, with --flush, into the backing file", async () => {
    const backing = join(dir, "backing.img");
    const backend = await FileBackend.open(backing, { create: true, size: SIZE });
    const s = await startServer({ backend });
    try {
      await tool("nbdcopy", ["--flush", src, s.uri]);
      expect(sha256(backing)).toBe(sha256(src));
      const out = join(dir, "back-file.img");
      await tool("nbdcopy", ["--flush", s.uri, out]);
      expect(sha256(out)).toBe(sha256(src));
    } finally {
      await s.stop();
      await backend.close();
    }
  });

  it("copies server to server (our export to our export)", async () => {
    const a = await startServer({ size: SIZE });
    const b = await startServer({ size: SIZE });
    try {
      await tool("nbdcopy", [src, a.uri]);
      await tool("nbdcopy", ["--flush", a.uri, b.uri]);
      const out = join(dir, "back-b.img");
      await tool("nbdcopy", [b.uri, out]);
      expect(sha256(out)).toBe(sha256(src));
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it("keeps the holes of a sparse source", async () => {
    const sparse = join(dir, "sparse.img");
    const fd = openSync(sparse, "w");
    ftruncateSync(fd, SIZE);
    const blob = randomBytes(MiB);
    writeSync(fd, blob, 0, MiB, 4 * MiB);
    writeSync(fd, blob, 0, MiB, 20 * MiB);
    closeSync(fd);
    const s = await startServer({ size: SIZE });
    try {
      await tool("nbdcopy", [sparse, s.uri]);
      const { stdout } = await tool("nbdinfo", ["--map", "--json", s.uri]);
      const map = JSON.parse(stdout) as MapEntry[];
      const typeAt = (off: number): number | undefined => map.find((m) => m.offset <= off && off < m.offset + m.length)?.type;
      expect(typeAt(0)).toBe(3); // hole,zero
      expect(typeAt(4 * MiB)).toBe(0); // data
      expect(typeAt(10 * MiB)).toBe(3);
      expect(typeAt(20 * MiB + MiB - 1)).toBe(0);
      expect(typeAt(SIZE - 1)).toBe(3);
      const dataBytes = map.filter((m) => m.type === 0).reduce((a, m) => a + m.length, 0);
      expect(dataBytes).toBe(2 * MiB);

      // And back out: the copy from our sparse export matches the source and is sparse too.
      const out = join(dir, "sparse-back.img");
      await tool("nbdcopy", [s.uri, out]);
      expect(sha256(out)).toBe(sha256(sparse));
      expect(statSync(out).blocks * 512).toBeLessThan(SIZE / 2);
    } finally {
      await s.stop();
    }
  });
});
