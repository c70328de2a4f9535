/**
 * Restore never overwrites by accident, and keeps the target thin. Restoring
 * into an existing LUN holding data, an existing file, or an NBD export is
 * refused without --force (exit 1, the message names the target and the flag)
 * and leaves the target byte-identical; with --force it works. A restored LUN
 * allocates about what the point holds, not its size: holes are skipped on a
 * new LUN and zeroed with trimming allowed (so deallocated) on a forced one.
 */
import { createHash } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdClient } from "../../src/nbd/client.js";
import { Repository } from "../../plugin/backup/repository/repository.js";
import { obj, sanboxBackup } from "../support/backup-cli.js";
import { startVmFixture, type VmFixture } from "../support/vm-fixture.js";

const MiB = 1024 * 1024;
const RDM_SIZE = 64 * MiB;

describe("restore refuses to overwrite without --force and stays thin", () => {
  let fx: VmFixture;
  let repoDir: string;
  let pointId: string;
  let image: Buffer;
  let imageAllocated: number;

  const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");
  const readLun = async (name: string): Promise<Buffer> => {
    const lun = await fx.rpc.getLun({ name });
    const exp = await fx.rpc.createExport({ lunId: lun.lunId });
    const c = await NbdClient.connect(exp.uri);
    try {
      return await c.read(0, c.size);
    } finally {
      await c.close();
      await fx.rpc.deleteExport({ exportId: exp.exportId });
    }
  };
  const allocatedOf = async (name: string): Promise<number> => (await fx.rpc.getLun({ name })).allocatedBytes;
  const restore = (to: string, ...extra: string[]) => sanboxBackup(["restore", pointId, "--disk", "vm1_1", "--to", to, "--repo", repoDir, "--array", fx.d.rpcEndpoint, ...extra]);

  beforeAll(async () => {
    fx = await startVmFixture("sanbox-e2e-661-", { seed: 661, rate: 1000, warmUp: 100, rdmBytes: RDM_SIZE });
    repoDir = join(fx.dir, "repo");
    const r = await sanboxBackup(["backup", "run", "vm1", "--repo", repoDir, "--array", fx.d.rpcEndpoint, "--hypervisor", fx.hv.endpoint, "--json"]);
    expect(r.exitCode, r.stderr).toBe(0);
    pointId = String(obj(JSON.parse(r.stdout))["point"]);
    await fx.hv.cli(["vm", "stop", "vm1"]);
    const repo = await Repository.open(repoDir);
    const reader = await repo.openImage(await repo.get(pointId), "vm1_1");
    image = await reader.read(0, reader.size);
    imageAllocated = reader.allocated().reduce((n, e) => n + e.length, 0);
    // The point must be thin for the allocation checks below to mean anything.
    expect(imageAllocated).toBeGreaterThan(0);
    expect(imageAllocated).toBeLessThan(RDM_SIZE / 2);
  });
  afterAll(async () => fx?.stop());

  it("refuses an existing LUN holding data and leaves it byte-identical; --force restores it and frees what the point does not hold", async () => {
    const lun = await fx.rpc.createLun({ name: "target", sizeBytes: RDM_SIZE });
    const exp = await fx.rpc.createExport({ lunId: lun.lunId });
    const c = await NbdClient.connect(exp.uri);
    await c.write(0, Buffer.alloc(MiB, 0xab));
    await c.write(40 * MiB, Buffer.alloc(2 * MiB, 0xcd));
    await c.flush();
    await c.close();
    await fx.rpc.deleteExport({ exportId: exp.exportId });
    const before = sha(await readLun("target"));

    const refused = await restore("lun:target");
    expect(refused.exitCode, refused.stderr).toBe(1);
    expect(refused.stderr).toMatch(/LUN target exists/);
    expect(refused.stderr).toContain("--force");
    expect(sha(await readLun("target"))).toBe(before);

    const forced = await restore("lun:target", "--force");
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect((await readLun("target")).equals(image)).toBe(true);
    // The 3 MiB written above are zeroed with trimming allowed, i.e. deallocated, not written as zeros.
    expect(await allocatedOf("target")).toBeLessThanOrEqual(imageAllocated);
  });

  it("a new LUN allocates what the point holds, not the disk's size", async () => {
    const r = await restore("lun:fresh");
    expect(r.exitCode, r.stderr).toBe(0);
    expect((await readLun("fresh")).equals(image)).toBe(true);
    const allocated = await allocatedOf("fresh");
    expect(allocated).toBeGreaterThan(0);
    expect(allocated).toBeLessThanOrEqual(imageAllocated);
  });

  it("refuses an existing file and leaves it byte-identical; --force restores it sparse", async () => {
    const file = join(fx.dir, "disk.raw");
    const content = Buffer.alloc(3 * MiB, 0x5a);
    writeFileSync(file, content);
    const refused = await restore(file);
    expect(refused.exitCode, refused.stderr).toBe(1);
    expect(refused.stderr).toContain(file);
    expect(refused.stderr).toContain("--force");
    expect(readFileSync(file).equals(content)).toBe(true);

    const forced = await restore(file, "--force");
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect(readFileSync(file).equals(image)).toBe(true);
    // st_blocks counts 512-byte units actually allocated: the holes cost nothing.
    expect(statSync(file).blocks * 512).toBeLessThanOrEqual(imageAllocated + 64 * 1024);
  });

  it("refuses an NBD export without --force", async () => {
    const lun = await fx.rpc.getLun({ name: "target" });
    const exp = await fx.rpc.createExport({ lunId: lun.lunId });
    try {
      const before = sha(await readLun("target"));
      const refused = await restore(exp.uri);
      expect(refused.exitCode, refused.stderr).toBe(1);
      expect(refused.stderr).toContain(exp.uri);
      expect(refused.stderr).toContain("--force");
      expect(sha(await readLun("target"))).toBe(before);
      const forced = await restore(exp.uri, "--force");
      expect(forced.exitCode, forced.stderr).toBe(0);
    } finally {
      await fx.rpc.deleteExport({ exportId: exp.exportId });
    }
  });
});
