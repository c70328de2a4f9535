// `array serve --backend rbd` stops cleanly on SIGTERM while it has `rbd` children
// running (the background usage pass) and a qemu-nbd per open image, even when
// SIGTERM comes again during the shutdown (cli/run.ts waitForStopSignal).
// The bug this pins: execa's signal-exit hook re-raised SIGTERM once our one-shot
// handler was gone, so the daemon died by SIGTERM whenever an `rbd` call was in flight.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { NbdClient } from "../../src/nbd/client.js";
import { field, startArrayDaemon, str, type ArrayDaemon } from "../support/array-daemon.js";
import { alive } from "../support/ceph-cluster.js";
import { tempDir } from "../support/tools.js";

const MiB = 1024 * 1024;
const LUNS = 6;

/** PIDs and names of `pid`'s children, from /proc. */
function children(pid: number): { pid: number; comm: string }[] {
  const out: { pid: number; comm: string }[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const ppid = Number(stat.slice(close + 2).split(" ")[1]);
      if (ppid === pid) out.push({ pid: Number(e), comm: stat.slice(stat.indexOf("(") + 1, close) });
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

describe("array serve --backend rbd: shutdown", () => {
  const tmp = tempDir("sanbox-rbd-110-");
  let d: ArrayDaemon | undefined;
  afterAll(async () => {
    await d?.kill("SIGKILL").catch(() => undefined);
    tmp.cleanup();
  });

  it("exits 0 on SIGTERM, twice, with rbd calls in flight and one qemu-nbd per image, leaving none", async () => {
    d = await startArrayDaemon(join(tmp.dir, "array"), ["--backend", "rbd", "--ceph-conf", inject("cephConf"), "--pool", inject("cephPool")]);
    const pid = d.pid ?? 0;
    for (let i = 0; i < LUNS; i++) await d.cli(["lun", "create", `s${i}`, "32M"]);
    const snaps = field(await d.json(["snap", "create", "s0", "--name", "s0-snap"]), "snapshots");
    if (!Array.isArray(snaps)) throw new Error("no snapshots in output");
    const snapId = str(snaps[0], "snapshotId");
    const data = Buffer.alloc(4 * MiB, 7);
    // Writes mark every LUN for the usage pass, which starts `rbd diff` children about 2 s later.
    const clients = await Promise.all([...Array(LUNS).keys()].map((i) => NbdClient.connect(d?.uri(`lun/s${i}`) ?? "")));
    await Promise.all(clients.map((c) => c.write(0, data)));
    const snapClient = await NbdClient.connect(d.uri(`snap/${snapId}/s0`));
    await snapClient.read(0, 4096);
    await Promise.all([...clients, snapClient].map((c) => c.close()));
    const qemu = children(pid).filter((c) => c.comm === "qemu-nbd");
    expect(qemu.length).toBe(LUNS + 1);
    const until = Date.now() + 20_000;
    while (!children(pid).some((c) => c.comm === "rbd") && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(children(pid).some((c) => c.comm === "rbd")).toBe(true);

    const t0 = Date.now();
    process.kill(pid, "SIGTERM");
    await new Promise((r) => setTimeout(r, 30));
    process.kill(pid, "SIGTERM");
    await d.stop(); // a third SIGTERM, then requires exit 0 within execa's 5 s escalation
    const ms = Date.now() - t0;
    d = undefined;
    expect(ms).toBeLessThan(5_000);
    for (const q of qemu) expect(alive(q.pid)).toBe(false);
  }, 90_000);
});
