/**
 * `sanbox backup run --cbt csi`: the incremental's changed extents (and the
 * revert's S1→S2 diff) come from CSI GetMetadataDelta on the array's endpoint
 * instead of ArrayService GetChangedBlocks, and the backup is the same.
 *
 * One VM, two repositories: a full backup into each while the dependent-write
 * workload runs, more writes, the VM stopped, then an incremental into each,
 * one with the default CBT and one with `--cbt csi`. Both incrementals capture
 * the same final disks from different bases, so their restored images must be
 * byte-identical, each point verifies with the oracle, and both incrementals
 * read less than the full did. (A CSI delta that reports nothing makes the
 * first two fail: the flag really takes its CBT from CSI.)
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { obj, sanboxBackup } from "../support/backup-cli.js";
import { startVmFixture, type VmFixture } from "../support/vm-fixture.js";

const DISKS = ["vm1", "vm1_1"] as const;

async function cli(args: string[]): Promise<string> {
  const r = await sanboxBackup(args);
  if (r.exitCode !== 0) throw new Error(`sanbox ${args.join(" ")} failed (${r.exitCode}): ${r.stderr}`);
  return r.stdout;
}

async function backup(f: VmFixture, repo: string, extra: string[] = []): Promise<Record<string, unknown>> {
  return obj(JSON.parse(await cli(["backup", "run", "vm1", "--repo", repo, "--array", f.d.rpcEndpoint, "--hypervisor", f.hv.endpoint, "--json", ...extra])));
}

async function restored(f: VmFixture, repo: string, point: string, disk: string): Promise<Buffer> {
  const file = join(f.dir, `${point}-${disk}.raw`);
  await cli(["restore", point, "--disk", disk, "--to", file, "--repo", repo]);
  return readFileSync(file);
}

describe("backup run --cbt csi", () => {
  let f: VmFixture;
  const repos = { array: "", csi: "" };
  const fulls: Record<string, Record<string, unknown>> = {};
  const incs: Record<string, Record<string, unknown>> = {};

  beforeAll(async () => {
    f = await startVmFixture("sanbox-e2e-721-", { seed: 721, warmUp: 150 });
    repos.array = join(f.dir, "repo-array");
    repos.csi = join(f.dir, "repo-csi");
    fulls.array = await backup(f, repos.array);
    fulls.csi = await backup(f, repos.csi, ["--cbt", "csi"]);
    while ((await f.hv.client.getWorkloadStatus({ vm: "vm1" })).acknowledgedSeq < 450) await sleep(10);
    await f.hv.cli(["vm", "stop", "vm1"]);
    incs.array = await backup(f, repos.array, ["--cbt", "array"]);
    incs.csi = await backup(f, repos.csi, ["--cbt", "csi"]);
  });
  afterAll(async () => {
    await f?.stop();
  });

  it("makes incrementals that read less than the full and verify with the oracle", async () => {
    for (const k of ["array", "csi"] as const) {
      expect(incs[k]?.kind).toBe("incremental");
      expect(Number(incs[k]?.arrayBytesRead)).toBeLessThan(Number(fulls[k]?.arrayBytesRead));
      // The incremental was taken with the VM stopped: --oracle runs the check anyway.
      for (const p of [fulls[k]?.point, incs[k]?.point]) expect(await cli(["backup", "verify", String(p), "--oracle", "--repo", repos[k]])).toContain("oracle: consistent");
    }
  });

  it("restores byte-identical images from the --cbt csi and the default incrementals", async () => {
    for (const disk of DISKS) {
      const a = await restored(f, repos.array, String(incs.array?.point), disk);
      const c = await restored(f, repos.csi, String(incs.csi?.point), disk);
      expect(a.length).toBeGreaterThan(0);
      expect(c.equals(a), `disk ${disk} differs`).toBe(true);
    }
  });

  it("rejects an unknown --cbt source as a usage error", async () => {
    const r = await sanboxBackup(["backup", "run", "vm1", "--repo", repos.csi, "--cbt", "rest", "--array", f.d.rpcEndpoint, "--hypervisor", f.hv.endpoint]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/expected array or csi/);
  });
});
