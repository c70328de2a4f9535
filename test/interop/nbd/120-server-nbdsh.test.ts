/**
 * Every command, flag and error path of our server, driven by libnbd through one
 * long-lived nbdsh handle per export (strict mode off, so bad requests reach us).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryBackend } from "../../../src/nbd/backends/memory-backend.js";
import {
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
} from "../../../src/nbd/constants.js";
import { startServer, type RunningServer } from "../../support/nbd-server.js";
import { NbdshSession } from "../../support/nbdsh-session.js";
import { tool } from "../../support/tools.js";

const SIZE = 4 * 1024 * 1024;
const PAGE = 64 * 1024;
const HOLE = NBD_STATE_HOLE | NBD_STATE_ZERO;

const fill = (n: number, byte: number): string => Buffer.alloc(n, byte).toString("hex");
const zeros = (n: number): string => fill(n, 0);

describe("our server, driven by nbdsh", () => {
  let s: RunningServer;
  let h: NbdshSession;
  beforeAll(async () => {
    s = await startServer({ size: SIZE });
    h = await NbdshSession.open(s.uri);
  });
  afterAll(async () => {
    await h.close();
    await s.stop();
  });

  const extents = async (off: number, len: number, flags = 0): Promise<number[]> => {
    const r = await h.ok({ op: "block_status", off, len, flags });
    return r.extents?.["base:allocation"] ?? [];
  };

  it("advertises what the memory backend can do", async () => {
    const r = await h.ok({ op: "info" });
    expect(r.info).toEqual({
      size: SIZE,
      can_trim: true,
      can_zero: true,
      can_fast_zero: true,
      can_fua: true,
      can_flush: true,
      can_cache: true,
      read_only: false,
      can_meta_context: true,
    });
  });

  it("writes with and without FUA, reads back at unaligned offsets", async () => {
    await h.ok({ op: "pwrite", off: 1000, hex: fill(5000, 0xab) });
    await h.ok({ op: "pwrite", off: 3000, hex: fill(10, 0xcd), flags: NBD_CMD_FLAG_FUA });
    const r = await h.ok({ op: "pread", off: 999, len: 2012 });
    expect(r.hex).toBe(`00${fill(2000, 0xab)}${fill(10, 0xcd)}ab`);
    expect((await s.backend.read(3000, 10)).toString("hex")).toBe(fill(10, 0xcd));
  });

  it("flush and cache succeed", async () => {
    await h.ok({ op: "flush" });
    await h.ok({ op: "cache", off: 0, len: SIZE });
  });

  it("accepts FUA on every command, as proto.md requires once SEND_FUA is advertised", async () => {
    await h.ok({ op: "flush", flags: NBD_CMD_FLAG_FUA });
    await h.ok({ op: "cache", off: 0, len: 4096, flags: NBD_CMD_FLAG_FUA });
    await h.ok({ op: "pread", off: 0, len: 16, flags: NBD_CMD_FLAG_FUA });
    expect(await extents(0, PAGE, NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE)).toHaveLength(2);
  });

  it("reads with DF (one content chunk) across data and holes", async () => {
    await h.ok({ op: "pwrite", off: 20 * PAGE, hex: fill(100, 0x55) });
    const r = await h.ok({ op: "pread", off: 20 * PAGE - 50, len: PAGE, flags: NBD_CMD_FLAG_DF });
    expect(r.hex).toBe(`${zeros(50)}${fill(100, 0x55)}${zeros(PAGE - 150)}`);
  });

  it("trim turns whole pages back into holes and reads as zeros", async () => {
    await h.ok({ op: "pwrite", off: 4 * PAGE, hex: fill(2 * PAGE, 0x11) });
    expect(await extents(4 * PAGE, 2 * PAGE)).toEqual([2 * PAGE, 0]);
    await h.ok({ op: "trim", off: 4 * PAGE, len: 2 * PAGE, flags: NBD_CMD_FLAG_FUA });
    expect(await extents(4 * PAGE, 2 * PAGE)).toEqual([2 * PAGE, HOLE]);
    expect((await h.ok({ op: "pread", off: 4 * PAGE, len: 100 })).hex).toBe(zeros(100));
  });

  it("zero without NO_HOLE punches, with NO_HOLE allocates, both read as zeros", async () => {
    await h.ok({ op: "pwrite", off: 8 * PAGE, hex: fill(2 * PAGE, 0x22) });
    await h.ok({ op: "zero", off: 8 * PAGE, len: PAGE });
    await h.ok({ op: "zero", off: 9 * PAGE, len: PAGE, flags: NBD_CMD_FLAG_NO_HOLE });
    await h.ok({ op: "zero", off: 10 * PAGE, len: PAGE, flags: NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FUA });
    expect(await extents(8 * PAGE, 3 * PAGE)).toEqual([PAGE, HOLE, 2 * PAGE, 0]);
    expect((await h.ok({ op: "pread", off: 8 * PAGE, len: 3 * PAGE })).hex).toBe(zeros(3 * PAGE));
  });

  it("zero with FAST_ZERO succeeds on memory", async () => {
    await h.ok({ op: "pwrite", off: 12 * PAGE, hex: fill(100, 0x33) });
    await h.ok({ op: "zero", off: 12 * PAGE, len: 100, flags: NBD_CMD_FLAG_FAST_ZERO });
    expect((await h.ok({ op: "pread", off: 12 * PAGE, len: 100 })).hex).toBe(zeros(100));
  });

  it("a partial-page zero keeps the page and zeroes only the range", async () => {
    await h.ok({ op: "pwrite", off: 14 * PAGE, hex: fill(PAGE, 0x44) });
    await h.ok({ op: "zero", off: 14 * PAGE + 10, len: 20 });
    const r = await h.ok({ op: "pread", off: 14 * PAGE, len: 40 });
    expect(r.hex).toBe(`${fill(10, 0x44)}${zeros(20)}${fill(10, 0x44)}`);
    expect(await extents(14 * PAGE, PAGE)).toEqual([PAGE, 0]);
  });

  it("block status covers the request, and REQ_ONE answers exactly one extent", async () => {
    const all = await extents(0, SIZE);
    let sum = 0;
    for (let i = 0; i < all.length; i += 2) sum += all[i] ?? 0;
    expect(sum).toBe(SIZE);
    const one = await extents(0, SIZE, NBD_CMD_FLAG_REQ_ONE);
    expect(one).toHaveLength(2);
    expect(one).toEqual(all.slice(0, 2));
    const mid = await extents(PAGE / 2, 4 * PAGE, NBD_CMD_FLAG_REQ_ONE);
    expect(mid).toHaveLength(2);
    expect(mid[0]).toBeLessThanOrEqual(4 * PAGE);
  });

  it("a read beyond the end fails with EINVAL, and the handle lives on", async () => {
    const r = await h.run({ op: "pread", off: SIZE - 10, len: 20 });
    expect(r).toMatchObject({ ok: false, errno: "EINVAL" });
    expect(r.message).toMatch(/command failed/); // the server refused it, not libnbd's bounds check
    expect(await h.run({ op: "pread", off: SIZE, len: 1 })).toMatchObject({ ok: false, errno: "EINVAL" });
    expect((await h.ok({ op: "pread", off: SIZE - 10, len: 10 })).hex).toBe(zeros(10));
  });

  it("a write beyond the end fails with ENOSPC, and the handle lives on", async () => {
    expect(await h.run({ op: "pwrite", off: SIZE - 1, hex: "0102" })).toMatchObject({ ok: false, errno: "ENOSPC" });
    expect(await h.run({ op: "zero", off: SIZE, len: 512 })).toMatchObject({ ok: false, errno: "ENOSPC" });
    expect(await h.run({ op: "trim", off: SIZE - 512, len: 1024 })).toMatchObject({ ok: false, errno: "ENOSPC" });
    await h.ok({ op: "pwrite", off: SIZE - 1, hex: "07" });
    expect((await h.ok({ op: "pread", off: SIZE - 1, len: 1 })).hex).toBe("07");
  });

  it("block status beyond the end fails with EINVAL, and the handle lives on", async () => {
    expect(await h.run({ op: "block_status", off: SIZE, len: 512 })).toMatchObject({ ok: false, errno: "EINVAL" });
    expect(await extents(0, 512)).toHaveLength(2);
  });
});

describe("multi-conn: two libnbd handles on one export", () => {
  it("a write acknowledged on one connection is visible on the other", async () => {
    const s = await startServer({ size: SIZE });
    const a = await NbdshSession.open(s.uri);
    const b = await NbdshSession.open(s.uri);
    try {
      for (let i = 0; i < 20; i++) {
        const hex = fill(513, i);
        await (i % 2 ? a : b).ok({ op: "pwrite", off: i * 1000, hex });
        expect((await (i % 2 ? b : a).ok({ op: "pread", off: i * 1000, len: 513 })).hex).toBe(hex);
      }
      await a.ok({ op: "trim", off: 0, len: PAGE });
      expect((await b.ok({ op: "pread", off: 0, len: 16 })).hex).toBe(zeros(16));
    } finally {
      await a.close();
      await b.close();
      await s.stop();
    }
  });
});

describe("meta context negotiation, driven by nbdsh in option mode", () => {
  it("lists, filters and selects base:allocation", async () => {
    const s = await startServer({ size: SIZE, exportName: "e" });
    try {
      const script = `
import json
h.set_opt_mode(True)
h.connect_uri(${JSON.stringify(s.uri)})
out = {}
def lst(key):
    got = []
    def cb(name):
        got.append(name)
        return 0
    h.opt_list_meta_context(cb)
    out[key] = got
lst("all")
h.add_meta_context("base:")
lst("namespace")
h.clear_meta_contexts()
h.add_meta_context("nope:x")
lst("unknown")
h.set_export_name("other")
h.clear_meta_contexts()
h.add_meta_context("base:allocation")
try:
    lst("other-export")
except nbd.Error as e:
    out["other-export"] = e.errno
h.set_export_name("e")
h.opt_go()
out["selected"] = h.can_meta_context("base:allocation")
print(json.dumps(out))
`;
      const { stdout } = await tool("nbdsh", ["-c", script]);
      const out = JSON.parse(stdout) as Record<string, unknown>;
      expect(out.all).toEqual(["base:allocation"]);
      expect(out.namespace).toEqual(["base:allocation"]);
      expect(out.unknown).toEqual([]);
      expect(out["other-export"]).toMatch(/^E[A-Z]+$/); // an errno: this server has no export "other"
      expect(out.selected).toBe(true);
    } finally {
      await s.stop();
    }
  });
});

describe("our server, read-only export, driven by nbdsh", () => {
  let s: RunningServer;
  let h: NbdshSession;
  beforeAll(async () => {
    const backend = new MemoryBackend(SIZE, { readOnly: true });
    s = await startServer({ backend });
    h = await NbdshSession.open(s.uri);
  });
  afterAll(async () => {
    await h.close();
    await s.stop();
  });

  it("is advertised read-only", async () => {
    expect((await h.ok({ op: "info" })).info).toMatchObject({ read_only: true, can_trim: false, can_zero: false });
  });

  it("refuses write, trim and zero with EPERM, and the handle lives on", async () => {
    expect(await h.run({ op: "pwrite", off: 0, hex: "01" })).toMatchObject({ ok: false, errno: "EPERM" });
    expect((await h.ok({ op: "pread", off: 0, len: 4 })).hex).toBe(zeros(4));
    expect(await h.run({ op: "trim", off: 0, len: 512 })).toMatchObject({ ok: false, errno: "EPERM" });
    expect(await h.run({ op: "zero", off: 0, len: 512 })).toMatchObject({ ok: false, errno: "EPERM" });
    expect(await h.run({ op: "pwrite", off: SIZE, hex: "01" })).toMatchObject({ ok: false, errno: "EPERM" });
    await h.ok({ op: "flush" });
    expect((await h.ok({ op: "pread", off: 0, len: 4 })).hex).toBe(zeros(4));
  });
});
