// `sanbox ds …` and `sanbox verify-consistency` on local raw files, as a user types them.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { registerDatastore, registerVerifyConsistency } from "../../../cli/datastore-commands.js";
import { FileBackend } from "../../../src/nbd/backends/file-backend.js";
import { Datastore } from "../../../src/datastore/datastore.js";
import { DatastoreFileDevice } from "../../../src/datastore/file-device.js";
import { DatastoreLease } from "../../../src/datastore/lease.js";
import { createVm } from "../../../src/datastore/vm-files.js";
import { applyOp } from "../../../src/oracle/apply-op.js";
import { Journal, Workload } from "../../../src/oracle/workload.js";

let dir = "";
let out = "";

async function sanbox(...args: string[]): Promise<{ out: string; code: number }> {
  const program = new Command("sanbox").exitOverride();
  registerDatastore(program);
  registerVerifyConsistency(program);
  out = "";
  process.exitCode = 0;
  await program.parseAsync(["node", "sanbox", ...args]);
  const code = typeof process.exitCode === "number" ? process.exitCode : 0;
  process.exitCode = 0;
  return { out, code };
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sanbox-ds-cli-"));
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    out += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
    return true;
  });
});
afterEach(async () => {
  vi.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

describe("sanbox ds", () => {
  it("format, cp-in, ls, extents, cp-out, fsck on a local file", async () => {
    const img = join(dir, "ds.img");
    const f = await sanbox("ds", "format", img, "--size", "8M", "--block-size", "64K", "--json");
    expect(JSON.parse(f.out)).toMatchObject({ blockSize: 65536, blocks: 128 });
    const src = join(dir, "in.bin");
    const data = Buffer.alloc(300 * 1024);
    data.fill(7, 70 * 1024, 140 * 1024);
    data.fill(9, 299 * 1024);
    await writeFile(src, data);
    const c = await sanbox("ds", "cp-in", img, src, "/disk-flat.vmdk", "--json");
    expect(JSON.parse(c.out)).toMatchObject({ size: data.length });
    const ls = JSON.parse((await sanbox("ds", "ls", img, "--json")).out) as { path: string; size: number }[];
    expect(ls.map((e) => [e.path, e.size])).toEqual([["/disk-flat.vmdk", data.length]]);
    const ext = JSON.parse((await sanbox("ds", "extents", img, "/disk-flat.vmdk", "--json")).out) as { extents: { fileOffset: number; length: number }[] };
    expect(ext.extents.map((x) => x.fileOffset)).toEqual([65536, 262144]); // blocks 1-2 and the last block: holes elsewhere
    expect((await sanbox("ds", "extents", img, "/disk-flat.vmdk")).out).toMatch(/FILE OFFSET/);
    const dst = join(dir, "out.bin");
    await sanbox("ds", "cp-out", img, "/disk-flat.vmdk", dst);
    expect((await readFile(dst)).equals(data)).toBe(true);
    const ck = await sanbox("ds", "fsck", img);
    expect(ck.code).toBe(0);
    expect(ck.out).toMatch(/clean/);
  });

  it("writes refuse a datastore whose writer lease is live; reads do not care; a released lease frees it", async () => {
    const img = join(dir, "ds.img");
    await sanbox("ds", "format", img, "--size", "4M");
    const src = join(dir, "in.bin");
    await writeFile(src, Buffer.alloc(4096, 5));
    const dev = await FileBackend.open(img);
    const lease = new DatastoreLease({ device: dev, resource: "lun-1", holder: { id: "d".repeat(32), name: "esx1:/hv", pid: 77 }, timeoutMs: 60_000, settleMs: 0, what: "ds" });
    try {
      await lease.acquire();
      const inUse = `${img} is in use by hypervisor "esx1:/hv" (pid 77, id dddddddd…), last heartbeat 0.`;
      await expect(sanbox("ds", "cp-in", img, src, "/f")).rejects.toThrow(inUse);
      await expect(sanbox("ds", "format", img)).rejects.toThrow(/is in use by hypervisor "esx1:\/hv" .*, stale 60 s after it$/);
      expect(JSON.parse((await sanbox("ds", "ls", img, "--json")).out)).toEqual([]);
      await lease.release();
      await sanbox("ds", "cp-in", img, src, "/f");
      expect((JSON.parse((await sanbox("ds", "ls", img, "--json")).out) as { path: string }[]).map((e) => e.path)).toEqual(["/f"]);
    } finally {
      await dev.close();
    }
  });
});

describe("sanbox verify-consistency", () => {
  it("passes for images of one moment, fails (exit 1) for skewed images", async () => {
    const spec = { seed: 5, vm: "vm1", disks: [{ id: "scsi0:0", kind: "vmdk" as const, size: 128 * 1024 }, { id: "naa.65a4e420123456789abcdef0123456789".slice(0, 36), kind: "rdm" as const, size: 128 * 1024 }] };
    const j = new Journal(new Workload(spec));
    for (let i = 0; i < 200; i++) j.ack(j.workload.next());
    const [a, b] = [join(dir, "vmdk.raw"), join(dir, "rdm.raw")];
    await writeFile(a, j.imageAt(200, "scsi0:0"));
    await writeFile(b, j.imageAt(200, spec.disks[1]!.id));
    const ok = await sanbox("verify-consistency", a, b);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/consistent: the images hold exactly the writes up to sequence 2\d\d/);
    await writeFile(b, j.imageAt(120, spec.disks[1]!.id));
    const bad = await sanbox("verify-consistency", a, b, "--json");
    expect(bad.code).toBe(1);
    const r = JSON.parse(bad.out) as { consistent: boolean; violations: { offset: number }[] };
    expect(r.consistent).toBe(false);
    expect(r.violations.length).toBeGreaterThan(0);
  });

  it("reads VMDK flat files from a datastore (--datastore, --vm) plus a raw RDM image", async () => {
    const dsImg = join(dir, "ds.img");
    const rdmImg = join(dir, "rdm.raw");
    const naa = "naa.65a4e42" + "0".repeat(25);
    const dev = await FileBackend.open(dsImg, { create: true, size: 4 * 1024 * 1024 });
    const rdm = await FileBackend.open(rdmImg, { create: true, size: 128 * 1024 });
    const fs = await Datastore.format(dev);
    const vm = await createVm(fs, { name: "vm1", disks: [{ kind: "vmdk", capacityBytes: 128 * 1024 }, { kind: "rdm", naa, capacityBytes: 128 * 1024 }] });
    const w = new Workload({ seed: 3, vm: "vm1", disks: [{ id: "scsi0:0", kind: "vmdk", size: 128 * 1024 }, { id: naa, kind: "rdm", size: 128 * 1024 }] });
    const targets = [{ device: await DatastoreFileDevice.open(fs, vm.disks[0]!.flatPath!) }, { device: rdm }];
    for (let i = 0; i < 100; i++) await applyOp(w, w.next(), targets);
    await fs.close();
    await dev.close();
    await rdm.close();
    const r = await sanbox("verify-consistency", "--datastore", dsImg, "--vm", "/vm1", rdmImg, "--json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ consistent: true, disks: [{ image: "/vm1/vm1-flat.vmdk" }, { image: rdmImg }] });
    const r2 = await sanbox("verify-consistency", "--datastore", dsImg, "ds:/vm1/vm1-flat.vmdk", rdmImg);
    expect(r2.out).toMatch(/consistent: the images hold exactly the writes up to sequence 1\d\d/);
  });
});
