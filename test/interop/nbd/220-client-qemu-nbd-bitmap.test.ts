/**
 * Our client reads QEMU's changed-block tracking: a qcow2 image carries a dirty
 * bitmap b0 added after some data was written; later writes dirty it; qemu-nbd
 * exports it as the meta context `qemu:dirty-bitmap:b0`, and `extents()` must
 * report exactly the later writes as dirty (bit 0), at the bitmap's granularity.
 */
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NBD_STATE_DIRTY } from "../../../src/nbd/constants.js";
import { NbdClient } from "../../../src/nbd/client.js";
import { formatNbdUri } from "../../../src/nbd/uri.js";
import { requireTool, tempDir, tool, TOOL_ENV } from "../../support/tools.js";
import { waitForSocket } from "../../support/wait-socket.js";

const KiB = 1024;

function startQemuNbd(args: string[]) {
  return execa(requireTool("qemu-nbd"), args, { env: TOOL_ENV, reject: false, stdin: "ignore" } as const);
}
const MiB = 1024 * KiB;

describe("NbdClient ↔ qemu-nbd with a dirty bitmap", () => {
  const tmp = tempDir();
  const img = join(tmp.dir, "disk.qcow2");
  const sock = join(tmp.dir, "qemu-nbd.sock");
  let server: ReturnType<typeof startQemuNbd> | undefined;
  const uri = formatNbdUri({ tls: false, transport: { kind: "unix", path: sock }, exportName: "" });

  beforeAll(async () => {
    requireTool("qemu-img");
    requireTool("qemu-io");
    requireTool("qemu-nbd");
    await tool("qemu-img", ["create", "-f", "qcow2", img, "4M"]);
    await tool("qemu-io", ["-f", "qcow2", "-c", "write -P 0x11 0 64k", img]); // before the bitmap: clean
    await tool("qemu-img", ["bitmap", "--add", "--enable", img, "b0"]);
    await tool("qemu-io", ["-f", "qcow2", "-c", "write -P 0x22 1M 64k", "-c", "write -P 0x33 3M 128k", "-c", "write -P 0x44 2M 100", img]);
    server = startQemuNbd(["--socket", sock, "--format", "qcow2", "--bitmap", "b0", "--read-only", "--persistent", "--shared", "8", img]);
    await waitForSocket(sock, server);
  });

  afterAll(async () => {
    server?.kill("SIGTERM");
    await server;
    tmp.cleanup();
  });

  it("reports exactly the ranges written after the bitmap was added", async () => {
    const c = await NbdClient.connect(uri, { metaContexts: ["qemu:dirty-bitmap:b0", "base:allocation"] });
    try {
      expect(c.size).toBe(4 * MiB);
      expect(c.readOnly).toBe(true);
      const dirty: [number, number][] = [];
      let covered = 0;
      for await (const e of c.extents("qemu:dirty-bitmap:b0")) {
        expect(e.offset).toBe(covered);
        covered += e.length;
        if ((e.flag & NBD_STATE_DIRTY) !== 0) {
          const last = dirty.at(-1);
          if (last !== undefined && last[1] === e.offset) last[1] += e.length;
          else dirty.push([e.offset, e.offset + e.length]);
        }
      }
      expect(covered).toBe(4 * MiB);
      // granularity 64 KiB: the 100-byte write at 2M dirties one whole granule
      expect(dirty).toEqual([
        [1 * MiB, 1 * MiB + 64 * KiB],
        [2 * MiB, 2 * MiB + 64 * KiB],
        [3 * MiB, 3 * MiB + 128 * KiB],
      ]);
      // and the data is there
      expect((await c.read(3 * MiB, 4)).equals(Buffer.alloc(4, 0x33))).toBe(true);
      expect((await c.read(0, 4)).equals(Buffer.alloc(4, 0x11))).toBe(true);
    } finally {
      await c.close();
    }
  });

  it("agrees with nbdinfo --map", async () => {
    const { stdout } = await tool("nbdinfo", ["--map=qemu:dirty-bitmap:b0", "--json", uri]);
    const parsed: unknown = JSON.parse(stdout);
    if (!Array.isArray(parsed)) throw new Error("nbdinfo --json did not return an array");
    const theirs = parsed
      .map((x: unknown) => x as { offset: number; length: number; type: number })
      .filter((x) => (x.type & 1) !== 0)
      .map((x) => [x.offset, x.offset + x.length]);
    const c = await NbdClient.connect(uri, { metaContexts: ["qemu:dirty-bitmap:b0"] });
    const ours: number[][] = [];
    try {
      for await (const e of c.extents("qemu:dirty-bitmap:b0")) if ((e.flag & 1) !== 0) ours.push([e.offset, e.offset + e.length]);
    } finally {
      await c.close();
    }
    expect(ours).toEqual(theirs);
  });
});
