/**
 * `sanbox backup run` against a real array daemon and hypervisor while the VM's
 * dependent-write chain runs (2 VMDKs on the datastore LUN, 1 physical RDM), as
 * a suite any array backend runs unchanged (test/e2e/600 on the local store,
 * test/rbd/200 on Ceph RBD):
 *
 *  - A full backup and a chain of incrementals, at random moments: every point
 *    passes the oracle, and every disk image is byte-identical to the disk read
 *    straight from the point's S1 (VMDK flat files through the datastore on the
 *    S1 export, the RDM from its S1 export): the revert is exact, and the
 *    incremental chain restores what S1 held. Only the newest S1 stays on the
 *    array; no S2 is left behind.
 *  - Negative control: the same backups with --no-revert fail the oracle.
 */
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdDevice } from "../../src/nbd/nbd-device.js";
import { Datastore } from "../../src/datastore/datastore.js";
import { NbdClient } from "../../src/nbd/client.js";
import { connectArray, type ArrayClient } from "../../src/rpc/array-client.js";
import { Repository } from "../../plugin/backup/repository/repository.js";
import { verifyPoint } from "../../plugin/backup/verify-point.js";
import { startArrayDaemon, type ArrayDaemon } from "./array-daemon.js";
import { startHypervisor, type HypervisorDaemon } from "./hypervisor-daemon.js";
import { obj, sanboxBackup } from "./backup-cli.js";
import { tempDir } from "./tools.js";

export interface BackupRunSuiteOptions {
  title: string;
  tempPrefix: string;
  /** Extra `sanbox array serve` arguments (the backend), read when the suite starts. */
  arrayArgs: () => string[];
  /** The chain length: one full backup, then incrementals. */
  runs: number;
}

export function describeBackupRun(opts: BackupRunSuiteOptions): void {
  const RUNS = opts.runs;
  describe(opts.title, () => {
    let tmp: { dir: string; cleanup: () => void };
    let d: ArrayDaemon;
    let rpc: ArrayClient;
    let hv: HypervisorDaemon;

    beforeAll(async () => {
      tmp = tempDir(opts.tempPrefix);
      d = await startArrayDaemon(join(tmp.dir, "array"), opts.arrayArgs());
      rpc = connectArray({ endpoint: d.rpcEndpoint });
      await rpc.createLun({ name: "ds", sizeBytes: 128 * 1024 * 1024 });
      await rpc.createLun({ name: "rdm", sizeBytes: 4 * 1024 * 1024 });
      hv = await startHypervisor(join(tmp.dir, "hv"), d.rpcEndpoint);
      await hv.cli(["vm", "create", "vm1", "--datastore", "ds", "--disk", "2M", "--disk", "2M", "--rdm", "rdm"]);
      await hv.cli(["vm", "start", "vm1", "--seed", "600"]);
      while ((await hv.client.getWorkloadStatus({ vm: "vm1" })).acknowledgedSeq < 200) await sleep(10);
    });
    afterAll(async () => {
      await hv?.cli(["vm", "stop", "vm1"], { reject: false });
      await hv?.stop();
      rpc?.close();
      await d?.stop();
      tmp?.cleanup();
    });

    const run = async (repo: string, extra: string[] = []): Promise<Record<string, unknown>> => {
      const r = await sanboxBackup(["backup", "run", "vm1", "--repo", repo, "--array", d.rpcEndpoint, "--hypervisor", hv.endpoint, "--chunk-size", "64K", "--json", ...extra]);
      if (r.exitCode !== 0) throw new Error(`backup run failed (${r.exitCode}): ${r.stderr}`);
      return obj(JSON.parse(r.stdout));
    };

    /** Every disk of the point equals the disk read directly from its S1 snapshot. */
    async function expectImagesMatchS1(repo: Repository, pointId: string): Promise<void> {
      const p = await repo.get(pointId);
      for (const disk of p.disks) {
        const snap = p.base.snapshots.find((s) => (disk.kind === "vmdk" ? s.lunId === p.datastoreLunId : s.lunId === disk.lunId));
        if (snap === undefined) throw new Error(`no S1 member for ${disk.name}`);
        const exp = await rpc.createExport({ snapshotId: snap.snapshotId });
        const client = await NbdClient.connect(exp.uri);
        try {
          let direct: Buffer;
          if (disk.kind === "vmdk") {
            const ds = await Datastore.open(new NbdDevice(client, false), { readOnly: true });
            direct = await ds.readFile(disk.flatPath ?? "");
          } else direct = await client.read(0, client.size);
          const image = await repo.openImage(p, disk.name);
          expect(image.size, `${disk.name} size`).toBe(direct.length);
          const got = await image.read(0, image.size);
          expect(got.equals(direct), `${disk.name} of ${p.id} differs from its S1`).toBe(true);
        } finally {
          await client.close();
          await rpc.deleteExport({ exportId: exp.exportId });
        }
      }
    }

    it(`a full backup and ${RUNS - 1} incrementals pass the oracle and equal their S1`, async () => {
      const dir = join(tmp.dir, "repo");
      const kinds: string[] = [];
      let reverted = 0;
      for (let i = 0; i < RUNS; i++) {
        await sleep(Math.floor(Math.random() * 300));
        const s = await run(dir);
        kinds.push(String(s["kind"]));
        const repo = await Repository.open(dir);
        const pointId = String(s["point"]);
        const v = await verifyPoint(repo, await repo.get(pointId));
        expect(v.badChunks).toEqual([]);
        expect(v.oracle?.violations ?? []).toEqual([]);
        expect(v.ok, `point ${pointId} failed the oracle`).toBe(true);
        await expectImagesMatchS1(repo, pointId);
        for (const disk of s["disks"] as Record<string, unknown>[]) reverted += Number(disk["bytesReverted"] ?? 0);
        // Only this point's S1 remains of the backup's snapshots.
        const snaps = (await rpc.listSnapshots({})).snapshots.filter((x) => /^sanbox-backup-[0-9a-f]{8}-vm1-/.test(x.name));
        expect(new Set(snaps.map((x) => x.groupSnapshotId))).toEqual(new Set([obj(s["base"])["groupSnapshotId"]]));
      }
      expect(kinds[0]).toBe("full");
      expect(kinds.slice(1).every((k) => k === "incremental")).toBe(true);
      expect(reverted).toBeGreaterThan(0);
    }, 30_000 + RUNS * 10_000);

    it("negative control: without the revert the oracle fails", async () => {
      const dir = join(tmp.dir, "repo-norevert");
      let failed = 0;
      const runs = Math.max(2, Math.min(RUNS, 4));
      for (let i = 0; i < runs; i++) {
        const s = await run(dir, ["--no-revert"]);
        const repo = await Repository.open(dir);
        const v = await verifyPoint(repo, await repo.get(String(s["point"])));
        expect(v.badChunks).toEqual([]);
        if (v.oracle?.consistent === false) failed++;
      }
      // The workload runs unthrottled: the VM always writes between T1 and T2.
      expect(failed).toBe(runs);
    });
  });
}
