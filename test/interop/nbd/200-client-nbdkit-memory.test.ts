/**
 * Our client against `nbdkit memory`: every command round trips, reads are
 * reassembled from data and hole chunks, 200 pipelined requests complete out of
 * order behind nbdkit's delay filter, and nbdinfo agrees with what we wrote.
 */
import { randomBytes } from "node:crypto";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidArgumentError, NbdCommandError } from "../../../src/errors.js";
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from "../../../src/nbd/constants.js";
import { NbdClient, type StatusExtent } from "../../../src/nbd/client.js";
import { Nbdkit } from "../../../src/nbdkit/nbdkit.js";
import { requireTool, tempDir, tool } from "../../support/tools.js";

const MiB = 1024 * 1024;

describe("NbdClient ↔ nbdkit memory", () => {
  let kit: Nbdkit;
  let c: NbdClient;

  beforeAll(async () => {
    requireTool("nbdkit");
    kit = await Nbdkit.start({ plugin: "memory", pluginArgs: ["64M"] });
    c = await NbdClient.connect(kit.uri, { metaContexts: ["base:allocation"] });
  });
  afterAll(async () => {
    await c?.close();
    await kit?.stop();
  });

  it("negotiates the export", () => {
    expect(c.size).toBe(64 * MiB);
    expect(c.structuredReplies).toBe(true);
    expect(c.readOnly).toBe(false);
    expect(c.canFlush && c.canTrim && c.canZero && c.canFua && c.canCache && c.canMultiConn).toBe(true);
    expect(c.metaContexts.has("base:allocation")).toBe(true);
    // nbdkit memory sends no NBD_INFO_BLOCK_SIZE (see the blocksize-policy test)
    expect(c.blockSize).toBeUndefined();
  });

  it("writes, reads back (aligned and unaligned), flushes", async () => {
    const data = randomBytes(3 * 65536);
    await c.write(MiB, data);
    expect((await c.read(MiB, data.length)).equals(data)).toBe(true);
    expect((await c.read(MiB + 7, 1000)).equals(data.subarray(7, 1007))).toBe(true);
    // straddles written data and never-written (hole) space
    const r = await c.read(MiB - 513, 1026);
    expect(r.subarray(0, 513).every((b) => b === 0)).toBe(true);
    expect(r.subarray(513).equals(data.subarray(0, 513))).toBe(true);
    await c.write(MiB + 3, Buffer.from("xyz"), { fua: true });
    expect((await c.read(MiB + 3, 3)).toString()).toBe("xyz");
    await c.flush();
  });

  it("splits reads and writes above 32 MiB", async () => {
    const data = randomBytes(33 * MiB);
    await c.write(10 * MiB, data);
    const back = await c.read(10 * MiB, data.length);
    expect(back.equals(data)).toBe(true);
    await c.trim(10 * MiB, data.length);
  });

  it("trims, zeroes and caches, and block status shows it", async () => {
    await c.write(4 * MiB, Buffer.alloc(2 * MiB, 0xaa));
    await c.zero(4 * MiB, 65536);
    await c.trim(5 * MiB, MiB);
    await c.cache(4 * MiB, MiB);
    expect((await c.read(4 * MiB, 65536)).every((b) => b === 0)).toBe(true);
    expect((await c.read(4 * MiB + 65536, 4)).equals(Buffer.alloc(4, 0xaa))).toBe(true);
    expect((await c.read(5 * MiB, MiB)).every((b) => b === 0)).toBe(true);

    const extents: StatusExtent[] = [];
    for await (const e of c.extents("base:allocation", 4 * MiB, 2 * MiB)) extents.push(e);
    // contiguous, clipped to the range
    expect(extents[0]?.offset).toBe(4 * MiB);
    let at = 4 * MiB;
    for (const e of extents) {
      expect(e.offset).toBe(at);
      at += e.length;
    }
    expect(at).toBe(6 * MiB);
    const flagsAt = (off: number): number | undefined => extents.find((e) => e.offset <= off && off < e.offset + e.length)?.flag;
    expect(flagsAt(4 * MiB + 65536)).toBe(0); // data
    expect(flagsAt(5 * MiB)).toBe(NBD_STATE_HOLE | NBD_STATE_ZERO); // trimmed

    const one = await c.blockStatus(5 * MiB, MiB, { reqOne: true });
    expect(one.get("base:allocation")).toHaveLength(1);
  });

  it("validates requests before sending them", async () => {
    await expect(c.read(64 * MiB - 10, 11)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(c.write(-1, Buffer.alloc(1))).rejects.toBeInstanceOf(InvalidArgumentError);
    expect((await c.read(0, 0)).length).toBe(0);
    // the connection is still fine
    expect((await c.read(0, 512)).length).toBe(512);
  });

  it("nbdinfo, nbdcopy and qemu-img see what our client wrote", async () => {
    requireTool("nbdcopy");
    requireTool("qemu-img");
    await c.write(0, Buffer.from("hello from sanbox"));
    await c.flush();
    const { stdout } = await tool("nbdinfo", ["--map", kit.uri]);
    expect(stdout).toMatch(/data/);
    const tmp = tempDir();
    try {
      const out = join(tmp.dir, "copy.raw");
      await tool("nbdcopy", [kit.uri, out]);
      const fd = await open(out, "r");
      const head = Buffer.alloc(17);
      await fd.read(head, 0, 17, 0);
      await fd.close();
      expect(head.toString()).toBe("hello from sanbox");
      const info = await tool("qemu-img", ["info", "--output=json", kit.uri]);
      expect(info.stdout).toMatch(/"virtual-size": 67108864/);
    } finally {
      tmp.cleanup();
    }
  });
});

describe("pipelining against nbdkit memory + delay filter", () => {
  it("completes 200 concurrent requests out of order", async () => {
    requireTool("nbdkit");
    // delay-read varies by offset through the eval-free trick of two stacked filters:
    // delay each read a little, and let nbdkit's thread pool complete them in any order.
    const kit = await Nbdkit.start({ plugin: "memory", pluginArgs: ["16M"], filters: ["delay"], filterArgs: { rdelay: "5ms", wdelay: "5ms" }, threads: 32 });
    const c = await NbdClient.connect(kit.uri, { maxInFlight: 200 });
    try {
      const blocks = Array.from({ length: 100 }, (_, i) => ({ off: i * 65536 + (i % 7) * 3, data: randomBytes(1000 + ((i * 37) % 4000)) }));
      await Promise.all(blocks.map((b) => c.write(b.off, b.data)));
      const order: number[] = [];
      const reads = blocks.map((b, i) =>
        c.read(b.off, b.data.length).then((r) => {
          order.push(i);
          return r;
        }),
      );
      const writes = blocks.map((b, i) => c.write(8 * MiB + b.off, b.data).then(() => order.push(100 + i)));
      const results = await Promise.all(reads);
      await Promise.all(writes);
      results.forEach((r, i) => expect(r.equals(blocks[i]?.data ?? Buffer.alloc(0))).toBe(true));
      expect(order).toHaveLength(200);
      // with 32 threads and a delay, completion order differs from submission order
      expect(order).not.toEqual([...order].sort((a, b) => a - b));
    } finally {
      await c.close();
      await kit.stop();
    }
  });

  it("honours maxInFlight with a queue", async () => {
    const kit = await Nbdkit.start({ plugin: "memory", pluginArgs: ["1M"], filters: ["delay"], filterArgs: { rdelay: "2ms" } });
    const c = await NbdClient.connect(kit.uri, { maxInFlight: 4 });
    try {
      const all = Array.from({ length: 50 }, (_, i) => c.read(i * 512, 512));
      expect(c.inFlight).toBe(50);
      await Promise.all(all);
      expect(c.inFlight).toBe(0);
    } finally {
      await c.close();
      await kit.stop();
    }
  });

  it("learns the block size and splits at the server's maximum", async () => {
    const kit = await Nbdkit.start({
      plugin: "memory",
      pluginArgs: ["4M"],
      filters: ["blocksize-policy"],
      filterArgs: { "blocksize-minimum": "512", "blocksize-preferred": "4096", "blocksize-maximum": "65536", "blocksize-error-policy": "error" },
    });
    const c = await NbdClient.connect(kit.uri);
    try {
      expect(c.blockSize).toEqual({ minimum: 512, preferred: 4096, maximum: 65536 });
      const data = randomBytes(MiB);
      await c.write(0, data); // 16 requests of 64 KiB; one 1 MiB request would fail with EINVAL
      expect((await c.read(0, MiB)).equals(data)).toBe(true);
    } finally {
      await c.close();
      await kit.stop();
    }
  });

  it("read-only exports refuse writes locally with EPERM", async () => {
    const kit = await Nbdkit.start({ plugin: "memory", pluginArgs: ["1M"], readOnly: true });
    const c = await NbdClient.connect(kit.uri);
    try {
      expect(c.readOnly).toBe(true);
      const e = await c.write(0, Buffer.alloc(1)).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(NbdCommandError);
      expect((e as NbdCommandError).errno).toBe("EPERM");
    } finally {
      await c.close();
      await kit.stop();
    }
  });
});
