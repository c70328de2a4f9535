/**
 * Failure: a backup killed (kill -9) at each step (even inside the quiesce window) leaves the previous points
 * intact and no visible partial point; the next run deletes the snapshots the
 * killed run left on the array and the unfinished point in the repository, and
 * resumes a VM the killed run left quiesced. A
 * run that fails cleans up after itself. Through the driver interface: an
 * array without group snapshots gets a clear error; an array without CBT gets
 * full reads and still a correct, time-consistent point.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CbtUnavailableError, IoError, UnsupportedError } from "../../src/errors.js";
import type { StopName } from "../../src/failpoints.js";
import type { TypedExtent } from "../../src/rpc/block-stream.js";
import { connectArray, type ArrayClient } from "../../src/rpc/array-client.js";
import type { HypervisorClient } from "../../src/rpc/hypervisor-service-def.js";
import type { ArrayFacts, SnapshotSet } from "../../plugin/backup/array-driver.js";
import { runBackup } from "../../plugin/backup/backup-run.js";
import { GrpcArrayDriver } from "../../plugin/backup/grpc-array-driver.js";
import { Repository } from "../../plugin/backup/repository/repository.js";
import { verifyPoint } from "../../plugin/backup/verify-point.js";
import type { ArrayDaemon } from "../support/array-daemon.js";
import type { HypervisorDaemon } from "../support/hypervisor-daemon.js";
import { startVmFixture, type VmFixture } from "../support/vm-fixture.js";
import { obj, sanboxBackup, spawnBackup } from "../support/backup-cli.js";

describe("backup failures", () => {
  let tmp: { dir: string };
  let d: ArrayDaemon;
  let rpc: ArrayClient;
  let hv: HypervisorDaemon;
  let hvc: HypervisorClient;

  let fx: VmFixture | undefined;
  beforeAll(async () => {
    fx = await startVmFixture("sanbox-e2e-620-", { seed: 620, rate: 2000, warmUp: 100 });
    ({ d, rpc, hv, hvc } = fx);
    tmp = { dir: fx.dir };
  });
  afterAll(async () => fx?.stop());

  const backupSnapshots = async (): Promise<string[]> =>
    (await rpc.listSnapshots({})).snapshots.filter((s) => /^sanbox-backup-[0-9a-f]{8}-vm1-/.test(s.name)).map((s) => s.name);
  const args = (repo: string): string[] => ["backup", "run", "vm1", "--repo", repo, "--array", d.rpcEndpoint, "--hypervisor", hv.endpoint, "--json"];

  it("kill -9 at every step: no partial point, the next run cleans the array and the repository", async () => {
    const repoDir = join(tmp.dir, "repo-kill");
    const first = await sanboxBackup(args(repoDir));
    expect(first.exitCode, first.stderr).toBe(0);
    let latest = String(obj(JSON.parse(first.stdout))["point"]);
    const steps: StopName[] = ["after-s1", "in-quiesce", "after-s2", "before-commit", "before-rename"];
    for (const step of steps.sort(() => Math.random() - 0.5)) {
      const child = spawnBackup(args(repoDir), { SANBOX_FAILPOINTS: step });
      await new Promise<void>((res, rej) => {
        let err = "";
        child.stderr.on("data", (b: Buffer) => {
          err += b.toString();
          if (err.includes(`failpoint ${step}`)) res();
        });
        void child.then(() => rej(new Error(`backup exited before failpoint ${step}: ${err}`)));
      });
      child.kill("SIGKILL");
      await child;
      const repo = await Repository.open(repoDir);
      expect((await repo.list()).at(-1)?.id, `after a kill at ${step}`).toBe(latest);
      expect((await backupSnapshots()).length, `the killed run (${step}) left snapshots`).toBeGreaterThan(2);

      const next = await sanboxBackup(args(repoDir));
      expect(next.exitCode, next.stderr).toBe(0);
      const s = obj(JSON.parse(next.stdout));
      latest = String(s["point"]);
      expect(readdirSync(join(repoDir, "tmp"))).toEqual([]);
      const left = await backupSnapshots();
      expect(new Set(left.map((n) => n.replace(/@.*$/, "")))).toEqual(new Set([obj(s["base"])["name"]]));
      expect((await rpc.listExports({})).exports.filter((e) => e.snapshotId !== "")).toEqual([]);
      const v = await verifyPoint(repo, await repo.get(latest));
      expect(v.ok).toBe(true);
      expect((await hvc.getWorkloadStatus({ vm: "vm1" })).quiesced, `VM left quiesced after a kill at ${step}`).toBe(false);
    }
   }, 150_000);

  it("a run that fails deletes its snapshots and exports and commits nothing", async () => {
    const repo = await Repository.open(join(tmp.dir, "repo-fail"), { create: true, chunkSize: 65536 });
    class Failing extends GrpcArrayDriver {
      override async *changedExtents(base: string, target: string): AsyncIterable<TypedExtent> {
        void base;
        void target;
        throw new IoError("injected: the array broke during the diff");
      }
    }
    await runBackup({ vm: "vm1", repo, array: GrpcArrayDriver.connect({ endpoint: d.rpcEndpoint }), hypervisor: hvc });
    const before = await backupSnapshots();
    const driver = new Failing(connectArray({ endpoint: d.rpcEndpoint }));
    await expect(runBackup({ vm: "vm1", repo, array: driver, hypervisor: hvc })).rejects.toThrow(/injected/);
    driver.close();
    expect(await backupSnapshots()).toEqual(before);
    expect((await rpc.listExports({})).exports.filter((e) => e.snapshotId !== "")).toEqual([]);
    expect(await repo.list()).toHaveLength(1);
    expect(readdirSync(join(repo.dir, "tmp"))).toEqual([]);
    expect((await hvc.getWorkloadStatus({ vm: "vm1" })).quiesced).toBe(false);
  });

  it("an array without group snapshots is refused clearly; one without CBT gets full reads and a correct point", async () => {
    const repo = await Repository.open(join(tmp.dir, "repo-caps"), { create: true, chunkSize: 65536 });
    class NoGroups extends GrpcArrayDriver {
      override async facts(): Promise<ArrayFacts> {
        return { ...(await super.facts()), groupSnapshots: false };
      }
      override async createSnapshot(name: string, lunIds: readonly string[]): Promise<SnapshotSet> {
        if (lunIds.length > 1) throw new UnsupportedError("this array has no group snapshots");
        return super.createSnapshot(name, lunIds);
      }
    }
    const before = await backupSnapshots();
    const ng = new NoGroups(connectArray({ endpoint: d.rpcEndpoint }));
    await expect(runBackup({ vm: "vm1", repo, array: ng, hypervisor: hvc })).rejects.toMatchObject({ code: "UNSUPPORTED" });
    ng.close();
    expect(await backupSnapshots()).toEqual(before);

    class NoCbt extends GrpcArrayDriver {
      reads = 0;
      override async facts(): Promise<ArrayFacts> {
        return { ...(await super.facts()), cbtGranularity: 0 };
      }
      override async *changedExtents(): AsyncIterable<TypedExtent> {
        throw new CbtUnavailableError("no CBT on this array");
      }
    }
    const nc = new NoCbt(connectArray({ endpoint: d.rpcEndpoint }));
    const a = await runBackup({ vm: "vm1", repo, array: nc, hypervisor: hvc });
    const b = await runBackup({ vm: "vm1", repo, array: nc, hypervisor: hvc });
    nc.close();
    expect(a.kind).toBe("full");
    // Without CBT the second run reads everything again (and says so), yet is correct.
    expect(b.arrayBytesRead).toBeGreaterThan(0);
    for (const p of [a.point, b.point]) expect((await verifyPoint(repo, p)).ok).toBe(true);
  });
});
