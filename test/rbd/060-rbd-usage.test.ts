// Space figures on the RBD backend (simulator/array/rbd/rbd-usage.ts): a LUN's
// and a snapshot's allocatedBytes are the data visible in it at object
// granularity, the pool's usedBytes what `rbd du` counts; measured in the
// background, so the test waits for them, and they survive a restart.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { NbdClient } from "../../src/nbd/client.js";
import { field, startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { tempDir } from "../support/tools.js";

const KiB = 1024;
const MiB = 1024 * KiB;

describe("allocatedBytes and pool usage on the RBD backend", () => {
  let tmp: { dir: string; cleanup: () => void };
  let d: ArrayDaemon;
  const args = (): string[] => ["--backend", "rbd", "--ceph-conf", inject("cephConf"), "--pool", inject("cephPool")];

  beforeAll(async () => {
    tmp = tempDir("sanbox-rbd-060-");
    d = await startArrayDaemon(join(tmp.dir, "array"), args());
  });
  afterAll(async () => {
    await d?.stop();
    tmp?.cleanup();
  });

  /** Polls `read` until it returns `want` (the figures lag writes by a background pass). */
  async function eventually(read: () => Promise<unknown>, want: number, what: string): Promise<void> {
    const until = Date.now() + 30_000;
    let last: unknown;
    while (Date.now() < until) {
      last = await read();
      if (last === want) return;
      await new Promise((r) => setTimeout(r, 300));
    }
    throw new Error(`${what}: still ${String(last)} after 30 s, expected ${want}`);
  }
  const lunAllocated = async (name: string): Promise<unknown> => field(await d.json(["lun", "show", name]), "allocatedBytes");
  const snapAllocated = async (name: string): Promise<unknown> => field(await d.json(["snap", "show", name]), "allocatedBytes");

  it("follows writes, keeps a snapshot's figure, counts the pool, and survives a restart", async () => {
    await d.cli(["lun", "create", "u1", "8M"]);
    expect(await lunAllocated("u1")).toBe(0);
    const c = await NbdClient.connect(d.uri("lun/u1"));
    await c.write(0, Buffer.alloc(MiB, 1));
    await c.write(3 * MiB + 10, Buffer.alloc(100, 2)); // inside one 64 KiB object
    await c.flush();
    await eventually(() => lunAllocated("u1"), MiB + 64 * KiB, "LUN after the first writes");
    await d.cli(["snap", "create", "u1", "--name", "u1-s1"]);
    await eventually(() => snapAllocated("u1-s1"), MiB + 64 * KiB, "snapshot");
    await c.write(6 * MiB, Buffer.alloc(128 * KiB, 3));
    await c.flush();
    await c.close();
    await eventually(() => lunAllocated("u1"), MiB + 192 * KiB, "LUN after more writes");
    expect(await snapAllocated("u1-s1")).toBe(MiB + 64 * KiB);
    const used = field(await d.json(["pool"]), "usedBytes");
    expect(typeof used === "number" && used >= MiB + 192 * KiB).toBe(true);

    await d.stop();
    d = await startArrayDaemon(join(tmp.dir, "array"), args());
    await eventually(() => lunAllocated("u1"), MiB + 192 * KiB, "LUN after a restart");
    await eventually(() => snapAllocated("u1-s1"), MiB + 64 * KiB, "snapshot after a restart");
  }, 120_000);
});
