/**
 * nbdfuse mounts our export as a file; we write and read it through the kernel
 * with node fs, and check the bytes landed in our backend.
 *
 * All file I/O here is async: the server runs in this same process, so a
 * synchronous fs call on the FUSE file would block the event loop that has to
 * answer nbdfuse's NBD requests (a deadlock).
 */
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type RunningServer } from "../../support/nbd-server.js";
import { requireTool, tempDir, tool, TOOL_ENV } from "../../support/tools.js";

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
const FUSE_OPTIONS = { env: TOOL_ENV, reject: false, stdin: "ignore" } as const;

async function waitFor(cond: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("nbdfuse mount of our export", () => {
  let s: RunningServer;
  let dir: string;
  let cleanup: () => void;
  let mnt: string;
  let fuse: ResultPromise<typeof FUSE_OPTIONS> | undefined;
  let mounted = false;

  beforeAll(async () => {
    requireTool("fusermount3");
    ({ dir, cleanup } = tempDir("sanbox-nbdfuse-"));
    mnt = join(dir, "mnt");
    mkdirSync(mnt);
    s = await startServer({ size: SIZE });
    fuse = execa(requireTool("nbdfuse"), [mnt, s.uri], FUSE_OPTIONS);
    const file = join(mnt, "nbd");
    await waitFor(async () => {
      if (fuse?.exitCode !== null && fuse?.exitCode !== undefined) throw new Error(`nbdfuse exited early: ${String(fuse.exitCode)}`);
      const st = await stat(file).catch(() => undefined);
      return st?.size === SIZE;
    }, "the nbdfuse file to appear");
    mounted = true;
  });

  afterAll(async () => {
    try {
      if (mounted) await tool("fusermount3", ["-u", mnt], { reject: false });
      if (fuse) {
        const exited = await Promise.race([fuse.then(() => true), sleep(5000).then(() => false)]);
        if (!exited) {
          await tool("fusermount3", ["-u", "-z", mnt], { reject: false });
          fuse.kill("SIGKILL");
          await fuse;
        }
      }
    } finally {
      await s.stop();
      cleanup();
    }
  });

  it("writes through the file system land in our backend", async () => {
    const fh = await open(join(mnt, "nbd"), "r+");
    try {
      const a = randomBytes(64 * 1024);
      const b = randomBytes(4096);
      await fh.write(a, 0, a.length, 0);
      await fh.write(b, 0, b.length, 3 * MiB + 512);
      await fh.write(Buffer.from("tail"), 0, 4, SIZE - 4);
      await fh.sync();
      expect((await s.backend.read(0, a.length)).equals(a)).toBe(true);
      expect((await s.backend.read(3 * MiB + 512, b.length)).equals(b)).toBe(true);
      expect((await s.backend.read(SIZE - 4, 4)).toString()).toBe("tail");

      const back = Buffer.alloc(b.length);
      await fh.read(back, 0, back.length, 3 * MiB + 512);
      expect(back.equals(b)).toBe(true);
    } finally {
      await fh.close();
    }
  });

  it("writes to our backend are read through the file system", async () => {
    const c = randomBytes(8192);
    await s.backend.write(5 * MiB, c, { fua: false });
    // O_DIRECT-free reads may be served from the page cache; this range was never read before.
    const fh = await open(join(mnt, "nbd"), "r");
    try {
      const got = Buffer.alloc(c.length);
      const { bytesRead } = await fh.read(got, 0, got.length, 5 * MiB);
      expect(bytesRead).toBe(c.length);
      expect(got.equals(c)).toBe(true);
      const zero = Buffer.alloc(1000, 1);
      await fh.read(zero, 0, zero.length, 7 * MiB);
      expect(zero.equals(Buffer.alloc(1000))).toBe(true);
    } finally {
      await fh.close();
    }
  });

  it("unmounts and nbdfuse exits", async () => {
    await tool("fusermount3", ["-u", mnt]);
    mounted = false;
    const r = await Promise.race([fuse?.then((x) => x.exitCode), sleep(10_000).then(() => "timeout" as const)]);
    expect(r).toBe(0);
  });
});
