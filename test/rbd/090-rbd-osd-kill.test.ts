// The OSD killed in the middle of writes (scripts/ceph-cluster.mjs kill-osd, then
// start-osd). A writer stamps 4 KiB blocks, each at a new offset, and FLUSHes after
// every batch; a batch is durable once its FLUSH succeeded. While the OSD is gone,
// each write or FLUSH fails with EIO within the deadline (simulator/array/rbd/
// ceph-stall.ts) instead of hanging; the array keeps answering; after the OSD is
// back, writes succeed again, and every durable block reads back its stamp.
import { join } from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { NbdClient } from "../../src/nbd/client.js";
import { NbdCommandError } from "../../src/errors.js";
import { startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { clusterFault } from "../support/ceph-cluster.js";
import { tempDir } from "../support/tools.js";

const BLOCK = 4096;
const BATCH = 8;
const TIMEOUT_S = 6;

function stamp(seq: number): Buffer {
  const b = Buffer.alloc(BLOCK, seq & 0xff);
  b.write(`osd-kill block ${seq}\n`, 0);
  return b;
}

describe("array serve --backend rbd: the OSD killed mid-write", () => {
  const tmp = tempDir("sanbox-rbd-090-");
  let d: ArrayDaemon | undefined;
  let osdDown = false;
  afterAll(async () => {
    if (osdDown) await clusterFault(inject("cephConf"), ["start-osd"]);
    await d?.stop();
    tmp.cleanup();
  });

  it("fails I/O with EIO within the deadline, stays up, resumes after the restart, loses no durable write", async () => {
    d = await startArrayDaemon(join(tmp.dir, "array"), ["--backend", "rbd", "--ceph-conf", inject("cephConf"), "--pool", inject("cephPool"), "--ceph-timeout", String(TIMEOUT_S)]);
    await d.cli(["lun", "create", "ok", "64M"]);
    const c = await NbdClient.connect(d.uri("lun/ok"));
    const durable: number[] = [];
    const errors: { errno: string; ms: number }[] = [];
    let seq = 0;
    let stop = false;
    let okAfterRestart = 0;
    let restarted = false;
    const writer = (async () => {
      while (!stop) {
        const batch = [...Array(BATCH).keys()].map(() => seq++);
        const t0 = Date.now();
        try {
          for (const s of batch) await c.write(s * BLOCK, stamp(s));
          await c.flush();
          durable.push(...batch);
          if (restarted) okAfterRestart++;
        } catch (e) {
          if (!(e instanceof NbdCommandError)) throw e;
          errors.push({ errno: e.errno, ms: Date.now() - t0 });
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    })();

    await new Promise((r) => setTimeout(r, 1_500));
    const before = durable.length;
    expect(before).toBeGreaterThan(0);
    osdDown = true;
    await clusterFault(inject("cephConf"), ["kill-osd"]);
    const until = Date.now() + (TIMEOUT_S + 5) * 1000;
    while (errors.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect(errors.length).toBeGreaterThan(0);
    // The array answers while Ceph cannot.
    expect((await d.cli(["lun", "list"])).stdout).toMatch(/ok/);

    await clusterFault(inject("cephConf"), ["start-osd"]);
    osdDown = false;
    restarted = true;
    const resumeBy = Date.now() + 20_000;
    while (okAfterRestart < 3 && Date.now() < resumeBy) await new Promise((r) => setTimeout(r, 100));
    stop = true;
    await writer;
    expect(okAfterRestart).toBeGreaterThanOrEqual(3);

    expect(errors.every((e) => e.errno === "EIO")).toBe(true);
    // A batch stops at its first failed request, which the deadline (or, sooner, the OSD-map probe) bounds.
    const worst = Math.max(...errors.map((e) => e.ms));
    console.info(`090: ${durable.length} durable blocks, ${errors.length} failed batches, slowest failure ${worst} ms, ${okAfterRestart} batches after the restart`);
    expect(worst).toBeLessThan((TIMEOUT_S + 2) * 1000);
    for (const s of durable) expect((await c.read(s * BLOCK, BLOCK)).equals(stamp(s)), `durable block ${s}`).toBe(true);
    await c.close();
  }, 90_000);
});
