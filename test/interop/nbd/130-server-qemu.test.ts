/**
 * QEMU's NBD client against our server: qemu-img info/convert/compare and
 * qemu-nbd's list mode.
 */
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type RunningServer } from "../../support/nbd-server.js";
import { tempDir, tool } from "../../support/tools.js";

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;

describe("qemu-img and qemu-nbd against our server", () => {
  let s: RunningServer;
  let dir: string;
  let cleanup: () => void;
  const seed = randomBytes(3 * MiB);

  beforeAll(async () => {
    ({ dir, cleanup } = tempDir("sanbox-qemu-"));
    s = await startServer({ size: SIZE, exportName: "disk0" });
    await s.backend.write(MiB, seed, { fua: false });
  });
  afterAll(async () => {
    await s.stop();
    cleanup();
  });

  it("qemu-img info reads the size", async () => {
    const { stdout } = await tool("qemu-img", ["info", "--output=json", s.uri]);
    const info = JSON.parse(stdout) as { "virtual-size": number; format: string };
    expect(info["virtual-size"]).toBe(SIZE);
    expect(info.format).toBe("raw");
  });

  it("qemu-img convert copies our export to a file", async () => {
    const out = join(dir, "out.raw");
    await tool("qemu-img", ["convert", "-f", "raw", "-O", "raw", s.uri, out]);
    const got = readFileSync(out);
    expect(got.length).toBe(SIZE);
    expect(got.subarray(MiB, 4 * MiB).equals(seed)).toBe(true);
    expect(got.subarray(0, MiB).equals(Buffer.alloc(MiB))).toBe(true);
    await tool("qemu-img", ["compare", "-f", "raw", "-F", "raw", s.uri, out]);
  });

  it("qemu-img convert -n writes a file into our export", async () => {
    const img = Buffer.alloc(SIZE);
    const blob = randomBytes(2 * MiB);
    blob.copy(img, 8 * MiB);
    const file = join(dir, "in.raw");
    writeFileSync(file, img);
    await tool("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", file, s.uri]);
    expect((await s.backend.read(8 * MiB, 2 * MiB)).equals(blob)).toBe(true);
    // The image was zero where the seed had been: convert must have zeroed it.
    expect((await s.backend.read(MiB, 3 * MiB)).equals(Buffer.alloc(3 * MiB))).toBe(true);
    await tool("qemu-img", ["compare", "-f", "raw", "-F", "raw", file, s.uri]);
  });

  it("qemu-img compare notices a difference", async () => {
    const file = join(dir, "differs.raw");
    const img = await s.backend.read(0, SIZE);
    img[12345] = (img[12345] ?? 0) ^ 0xff;
    writeFileSync(file, img);
    const r = await tool("qemu-img", ["compare", "-f", "raw", "-F", "raw", s.uri, file], { reject: false });
    expect(r.exitCode).toBe(1);
    // qemu-img reports the start of the first differing 512-byte sector.
    expect(r.stdout).toMatch(/mismatch at offset 12288\b/);
  });

  it("qemu-nbd -L lists our export", async () => {
    const { stdout } = await tool("qemu-nbd", ["-L", "-k", s.socket]);
    expect(stdout).toMatch(/exports available: 1/);
    expect(stdout).toMatch(/export: 'disk0'/);
    expect(stdout).toMatch(new RegExp(`size:\\s+${SIZE}`));
    expect(stdout).toMatch(/base:allocation/);
  });
});
