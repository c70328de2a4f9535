// The pool full (the tier's single OSD past its full ratio, scripts/ceph-cluster.mjs
// `full on`; see there why not a pool quota): librados pauses writes instead of
// failing them, so the array ends them itself (simulator/array/rbd/ceph-stall.ts).
// A write through the array's NBD export fails with ENOSPC, a gRPC call that
// allocates fails NO_SPACE, each within the deadline; the array stays up, another
// LUN still reads; deleting a snapshot and a LUN works while full on an image no
// export has open (that is how space comes back; an open image's delete is NO_SPACE,
// see below); after `full off` writes work again and read back.
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, inject, it } from "vitest";
import { NbdClient } from "../../src/nbd/client.js";
import { NbdCommandError } from "../../src/errors.js";
import { field, startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { clusterFault } from "../support/ceph-cluster.js";
import { tempDir } from "../support/tools.js";

const MiB = 1024 * 1024;
/** --ceph-timeout: the longest a blocked call may take; the OSD-map probe ends a full-pool call after about 2 s. */
const TIMEOUT_S = 8;

/** Runs `p`, returns what it rejected with and how long it took. */
async function failure(p: Promise<unknown>): Promise<{ e: unknown; ms: number }> {
  const t0 = Date.now();
  try {
    await p;
  } catch (e) {
    return { e, ms: Date.now() - t0 };
  }
  throw new Error("expected a failure");
}

describe("array serve --backend rbd: the pool full", () => {
  const tmp = tempDir("sanbox-rbd-080-");
  let d: ArrayDaemon | undefined;
  let full = false;
  afterAll(async () => {
    if (full) await clusterFault(inject("cephConf"), ["full", "off"]);
    await d?.stop();
    tmp.cleanup();
  });

  it("ENOSPC on NBD writes, NO_SPACE on allocating calls, other LUNs keep reading, writes work after space returns", async () => {
    d = await startArrayDaemon(join(tmp.dir, "array"), ["--backend", "rbd", "--ceph-conf", inject("cephConf"), "--pool", inject("cephPool"), "--ceph-timeout", String(TIMEOUT_S)]);
    await d.cli(["lun", "create", "fa", "16M"]);
    await d.cli(["lun", "create", "fb", "16M"]);
    await d.cli(["lun", "create", "fd", "16M"]);
    const fdImage = `sanbox-${String(field(await d.json(["lun", "show", "fd"]), "id"))}`;
    await d.cli(["snap", "create", "fb", "--name", "fb-old"]);
    await d.cli(["snap", "create", "fd", "--name", "fd-old"]);
    const a = await NbdClient.connect(d.uri("lun/fa"));
    const b = await NbdClient.connect(d.uri("lun/fb"));
    await b.write(0, Buffer.alloc(MiB, 0xbb));
    await b.flush();
    await b.read(0, MiB); // the read path of fb is open before the pool fills

    full = true;
    await clusterFault(inject("cephConf"), ["full", "on"]);

    // librbd may take the write into its cache; the FLUSH then cannot complete. Either fails ENOSPC.
    const w = await failure((async () => {
      await a.write(0, Buffer.alloc(4 * MiB, 0xaa));
      await a.flush();
    })());
    expect(w.e).toBeInstanceOf(NbdCommandError);
    expect((w.e as NbdCommandError).errno).toBe("ENOSPC");
    expect(w.ms).toBeLessThan(TIMEOUT_S * 1000 + 2_000);
    console.info(`080: the NBD write+flush failed ENOSPC after ${w.ms} ms`);

    for (const args of [["snap", "create", "fa", "--name", "full-s1"], ["lun", "create", "fc", "16M"]]) {
      const t0 = Date.now();
      const r = await d.cli(args, { reject: false });
      expect(r.exitCode, args.join(" ")).toBe(1);
      expect(r.stderr).toMatch(/NO_SPACE/);
      expect(Date.now() - t0).toBeLessThan(TIMEOUT_S * 1000 + 3_000);
      console.info(`080: sanbox ${args.join(" ")} failed NO_SPACE after ${Date.now() - t0} ms (CLI start included)`);
    }

    // Deleting frees space, and Ceph lets removals through a full pool: on an image no
    // export has open, deleting a snapshot and the LUN work while full.
    await d.cli(["snap", "delete", "fd-old"]);
    await d.cli(["lun", "delete", "fd"]);
    // fb's qemu-nbd holds its exclusive lock, and handing the lock over writes to the
    // image header, which the full pool pauses: that delete fails NO_SPACE, bounded.
    const del = await d.cli(["snap", "delete", "fb-old"], { reject: false });
    expect(del.stderr).toMatch(/NO_SPACE/);

    // The array is up and the other LUN still reads what it had.
    expect((await b.read(0, MiB)).equals(Buffer.alloc(MiB, 0xbb))).toBe(true);
    expect((await d.cli(["lun", "list"])).stdout).toMatch(/fb/);

    await clusterFault(inject("cephConf"), ["full", "off"]);
    full = false;
    const data = Buffer.alloc(4 * MiB, 0xa1);
    await a.write(0, data);
    await a.flush();
    expect((await a.read(0, 4 * MiB)).equals(data)).toBe(true);
    await d.cli(["snap", "create", "fa", "--name", "full-s2"]);
    // The paused removal was carried out by fb's qemu-nbd once space returned; the retry finds it done.
    await d.cli(["snap", "delete", "fb-old"]);
    expect((await d.cli(["snap", "list"])).stdout).not.toMatch(/fb-old/);
    expect((await d.cli(["lun", "list"])).stdout).not.toMatch(/\bfd\b/);
    const images = await execa("rbd", ["-c", inject("cephConf"), "ls", inject("cephPool")], { env: { CEPH_ARGS: "" } });
    expect(String(images.stdout)).not.toContain(fdImage);
    await Promise.all([a.close(), b.close()]);
  }, 60_000);
});
