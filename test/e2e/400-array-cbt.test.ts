/**
 * The array you can run, end to end: start `sanbox array serve`, create a LUN,
 * fill it with nbdcopy, snapshot it, change it with nbdsh (write, trim, zero),
 * snapshot again. Then three views of "what changed" must agree: the changes we
 * actually made, `sanbox diff --json` (gRPC CBT), and `nbdinfo
 * --map=qemu:dirty-bitmap:<base>` on the snapshot export. The base snapshot
 * stays byte-identical to a copy saved before the changes (qemu-img compare), and
 * applying the diff to that copy reproduces the new snapshot (the
 * snapshot-metadata-verifier oracle).
 */
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { alignOut, normalize, union, type Extent } from "../../src/extents/index.js";
import { startArrayDaemon, str, field, type ArrayDaemon } from "../support/array-daemon.js";
import { tempDir, tool } from "../support/tools.js";

const MiB = 1024 * 1024;
const BS = 64 * 1024;
const SIZE = 16 * MiB;

/** nbdinfo --map lines: "offset length flags description". */
function parseMap(text: string): { offset: number; length: number; flags: number }[] {
  return text
    .trim()
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const [o, n, f] = l.trim().split(/\s+/);
      return { offset: Number(o), length: Number(n), flags: Number(f) };
    });
}

describe("array daemon: CBT agrees across gRPC, NBD dirty bitmap and reality", () => {
  let tmp: { dir: string; cleanup: () => void };
  let d: ArrayDaemon;
  let baseId = "";
  let afterId = "";
  const changes: Extent[] = [];

  beforeAll(async () => {
    tmp = tempDir("sanbox-e2e-400-");
    d = await startArrayDaemon(join(tmp.dir, "array"));
    await d.cli(["lun", "create", "disk", "16M"]);
    const src = join(tmp.dir, "src.img");
    const buf = Buffer.alloc(SIZE);
    for (let i = 0; i < SIZE; i += 4) buf.writeUInt32LE((i * 2654435761) >>> 0, i);
    writeFileSync(src, buf);
    await tool("nbdcopy", [src, d.uri("lun/disk")]);
    const snap = await d.json(["snap", "create", "disk", "--name", "base"]);
    const snaps = field(snap, "snapshots");
    if (!Array.isArray(snaps)) throw new Error("no snapshots in output");
    baseId = str(snaps[0], "snapshotId");
    await tool("nbdcopy", [d.uri(`snap/${baseId}/disk`), join(tmp.dir, "saved.img")]);

    // The changes: unaligned write, aligned trim, unaligned zero, write in the last block.
    const ops: [string, number, number][] = [
      ["pwrite", 100_000, 5000],
      ["trim", 4 * MiB, 256 * 1024],
      ["zero", 8 * MiB + 12_345, 200_000],
      ["pwrite", SIZE - 10, 10],
    ];
    const py = ops
      .map(([op, off, len]) => (op === "pwrite" ? `h.pwrite(b"\\xab" * ${len}, ${off})` : `h.${op}(${len}, ${off})`))
      .join("; ");
    await tool("nbdsh", ["-u", d.uri("lun/disk"), "-c", `${py}; h.flush()`]);
    for (const [, off, len] of ops) changes.push({ offset: off, length: len });
    const after = await d.json(["snap", "create", "disk", "--name", "after"]);
    const a = field(after, "snapshots");
    if (!Array.isArray(a)) throw new Error("no snapshots in output");
    afterId = str(a[0], "snapshotId");
  }, 120_000);

  afterAll(async () => {
    await d?.stop();
    tmp?.cleanup();
  });

  it("sanbox diff --json reports exactly the block-aligned changes, trim/zero as ZERO", async () => {
    const out = await d.json(["diff", "base", "after"]);
    expect(field(out, "volumeCapacityBytes")).toBe(SIZE);
    const ext = field(out, "extents");
    if (!Array.isArray(ext)) throw new Error("extents missing");
    const got = normalize(ext.map((e: unknown) => ({ offset: Number(field(e, "offset")), length: Number(field(e, "length")) })));
    const want = alignOut(normalize(changes), BS);
    expect(got).toEqual(union(want, []));
    // The whole-block trim is ZERO; a block with written bytes is DATA.
    const types = ext.map((e: unknown) => ({ offset: Number(field(e, "offset")), length: Number(field(e, "length")), type: String(field(e, "type")) }));
    const trimmed = types.find((t) => t.offset <= 4 * MiB && t.offset + t.length >= 4 * MiB + 256 * 1024);
    expect(trimmed?.type).toBe("ZERO");
    const written = types.find((t) => t.offset <= 100_000 && t.offset + t.length >= 105_000);
    expect(written?.type).toBe("DATA");
  });

  it("nbdinfo --map=qemu:dirty-bitmap:<base> on the snapshot export agrees", async () => {
    const r = await tool("nbdinfo", [`--map=qemu:dirty-bitmap:${baseId}`, d.uri(`snap/${afterId}/disk`)]);
    const entries = parseMap(r.stdout);
    expect(entries.reduce((n, e) => n + e.length, 0)).toBe(SIZE);
    const dirty = normalize(entries.filter((e) => (e.flags & 1) !== 0));
    expect(dirty).toEqual(alignOut(normalize(changes), BS));
  });

  it("diff against the live LUN matches too", async () => {
    const out = await d.json(["diff", "base", "live", "--lun", "disk"]);
    const ext = field(out, "extents");
    if (!Array.isArray(ext)) throw new Error("extents missing");
    const got = normalize(ext.map((e: unknown) => ({ offset: Number(field(e, "offset")), length: Number(field(e, "length")) })));
    expect(got).toEqual(alignOut(normalize(changes), BS));
  });

  it("the base snapshot is immutable: qemu-img compare with the saved copy", async () => {
    await tool("qemu-img", ["compare", "-f", "raw", "-F", "raw", join(tmp.dir, "saved.img"), d.uri(`snap/${baseId}/disk`)]);
    const live = await tool("qemu-img", ["compare", "-f", "raw", "-F", "raw", join(tmp.dir, "saved.img"), d.uri("lun/disk")], { reject: false });
    expect(live.exitCode).toBe(1);
  });

  it("applying the diff to the saved copy reproduces the new snapshot", async () => {
    const out = await d.json(["diff", "base", "after"]);
    const ext = field(out, "extents");
    if (!Array.isArray(ext)) throw new Error("extents missing");
    const after = join(tmp.dir, "after.img");
    await tool("nbdcopy", [d.uri(`snap/${afterId}/disk`), after]);
    const patched = join(tmp.dir, "patched.img");
    copyFileSync(join(tmp.dir, "saved.img"), patched);
    const img = readFileSync(patched);
    const target = readFileSync(after);
    for (const e of ext) {
      const off = Number(field(e, "offset"));
      const len = Number(field(e, "length"));
      if (String(field(e, "type")) === "ZERO") img.fill(0, off, off + len);
      else target.copy(img, off, off, off + len);
    }
    expect(Buffer.compare(img, target)).toBe(0);
    // And outside the diff nothing changed: the patched copy came only from the delta.
    writeFileSync(patched, img);
    await tool("qemu-img", ["compare", "-f", "raw", "-F", "raw", patched, d.uri(`snap/${afterId}/disk`)]);
  });
});
