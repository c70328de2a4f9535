/**
 * The backup demo (`sanbox demo`): the whole method on a laptop, under a minute,
 * no flags. It starts an array daemon (temporary data directory) and a
 * hypervisor as child processes, creates a datastore LUN and an RDM LUN and a
 * VM with two VMDKs and the RDM, starts the VM's dependent-write workload, takes
 * a full backup and an incremental while the VM writes, verifies both with the
 * oracle, restores one disk and compares it with the disk read straight from
 * the array snapshot S1, and shows the negative control: the same backup
 * without the revert fails the oracle. Everything it prints is measured.
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { GrpcArrayDriver } from "../plugin/backup/grpc-array-driver.js";
import { runBackup, type BackupSummary } from "../plugin/backup/backup-run.js";
import { Repository } from "../plugin/backup/repository/repository.js";
import { restoreImage } from "../plugin/backup/restore.js";
import { verifyPoint } from "../plugin/backup/verify-point.js";
import { NbdDevice } from "../src/nbd/nbd-device.js";
import { Datastore } from "../src/datastore/datastore.js";
import { ToolFailedError } from "../src/errors.js";
import { createLogger } from "../src/log.js";
import { packageRoot } from "../src/package-root.js";
import { NbdClient } from "../src/nbd/client.js";
import { connectArray } from "../src/rpc/array-client.js";
import { hv1 } from "../src/rpc/hypervisor-proto.js";
import { connectHypervisor } from "../src/rpc/hypervisor-service-def.js";
import { formatSize } from "../src/size.js";
import { formatBackupSummary } from "./backup-commands.js";
import { startArrayAndHypervisor } from "./child-daemons.js";

/**
 * `--backend rbd`: the array keeps its LUNs on a throwaway Ceph cluster started with
 * the checkout's scripts/ceph-cluster.mjs in the demo directory, stopped at the end.
 */
function cephCluster(cmd: "start" | "stop", dir: string): string {
  const script = join(packageRoot(), "scripts", "ceph-cluster.mjs");
  const r = spawnSync(process.execPath, [script, cmd, dir], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  if (r.error !== undefined) throw new ToolFailedError(`cannot run ${script}: ${r.error.message}`);
  if (r.status !== 0) throw new ToolFailedError(`scripts/ceph-cluster.mjs ${cmd} failed (exit ${r.status ?? r.signal}); the RBD demo needs: node scripts/setup.mjs --rbd`);
  return /^CEPH_CONF=(.+)$/m.exec(r.stdout)?.[1] ?? "";
}

export async function runBackupDemo(opts: { backend?: "local" | "rbd" } = {}): Promise<void> {
  const started = Date.now();
  const out = (s: string): boolean => process.stdout.write(s);
  const dir = await mkdtemp(join(tmpdir(), "sanbox-demo-"));
  let daemons: { array: string; hypervisor: string; stop: () => Promise<void> } | undefined;
  const log = createLogger("demo", process.env.SANBOX_LOG === "debug" ? "debug" : "warn");
  const rbd = opts.backend === "rbd";
  try {
    out(`sanbox backup demo in ${dir}\n\n`);
    let arrayArgs: string[] = [];
    if (rbd) {
      out("0. starting a throwaway Ceph cluster (scripts/ceph-cluster.mjs) for the LUNs\n");
      arrayArgs = ["--backend", "rbd", "--ceph-conf", cephCluster("start", join(dir, "ceph")), "--pool", "rbd"];
    }
    daemons = await startArrayAndHypervisor(dir, arrayArgs);
    const array = { endpoint: daemons.array };
    const rpc = connectArray({ endpoint: array.endpoint });
    await rpc.createLun({ name: "ds", sizeBytes: 256 * 1024 * 1024 });
    await rpc.createLun({ name: "db-rdm", sizeBytes: 16 * 1024 * 1024 });
    out(`1. array${rbd ? " (LUNs on Ceph RBD)" : ""} and hypervisor up (${array.endpoint}): LUN "ds" 256 MiB (datastore), LUN "db-rdm" 16 MiB (physical RDM)\n`);

    const hv = connectHypervisor({ endpoint: daemons.hypervisor });
    await hv.createVm({ name: "vm1", datastoreLun: "ds", disks: [{ kind: hv1.DiskKind.VMDK, capacityBytes: 8 * 1024 * 1024 }, { kind: hv1.DiskKind.VMDK, capacityBytes: 4 * 1024 * 1024 }, { kind: hv1.DiskKind.RDM, lun: "db-rdm" }] });
    await hv.startWorkload({ vm: "vm1", seed: 2026, rate: 400 });
    out(`2. VM vm1 = 2 VMDKs on "ds" + RDM "db-rdm"; dependent-write workload running at 400 operations/s\n\n`);
    const acked = async (): Promise<number> => (await hv.getWorkloadStatus({ vm: "vm1" })).acknowledgedSeq;
    const waitFor = async (n: number): Promise<void> => {
      while ((await acked()) < n) await sleep(20);
    };

    const repo = await Repository.open(join(dir, "repo"), { create: true, chunkSize: 256 * 1024 });
    const driver = GrpcArrayDriver.connect({ endpoint: array.endpoint });
    const results: BackupSummary[] = [];
    try {
      await waitFor(300);
      for (const [i, label] of ["full backup", "incremental backup"].entries()) {
        const before = await acked();
        const s = await runBackup({ vm: "vm1", repo, array: driver, hypervisor: hv, log });
        const after = await acked();
        results.push(s);
        const reverted = s.disks.reduce((n, d) => n + d.bytesReverted, 0);
        out(`${3 + i}. ${label} ${s.point.id} (the VM acknowledged writes ${before}..${after} meanwhile)\n`);
        out(indent(formatBackupSummary(s)));
        out(`   T1 cut the datastore and the RDM together; T2 (quiesced ${s.quiesceWindowMs} ms) cut the datastore alone ${Date.parse(s.t2) - Date.parse(s.t1)} ms later.\n`);
        out(`   The revert rewrote ${formatSize(reverted)} of VMDK ranges from S1, so the VMDKs match the RDM at T1.\n\n`);
        await waitFor(after + 100);
      }

      const verdicts = [];
      for (const s of results) verdicts.push(await verifyPoint(repo, s.point));
      out(`5. verify (chunks re-hashed, oracle over all 3 disks):\n`);
      for (const v of verdicts) out(`   ${v.point}: ${v.chunks} chunks ok=${v.badChunks.length === 0}, oracle ${v.oracle?.consistent === true ? `consistent (a prefix of ${v.oracle.prefix} operations of the write chain)` : "NOT consistent"}\n`);

      // Restore one disk and compare it with the flat file read straight from the array's S1.
      const last = results[results.length - 1];
      if (last === undefined) throw new Error("unreachable");
      const disk = last.point.disks.find((d) => d.kind === "vmdk");
      const s1 = last.point.base.snapshots.find((x) => x.lunId === last.point.datastoreLunId);
      if (disk === undefined || s1 === undefined) throw new Error("unreachable");
      const file = join(dir, `${disk.name}.raw`);
      const r = await restoreImage(await repo.openImage(last.point, disk.name), { kind: "file", path: file });
      const exp = await driver.exportSnapshot(s1.snapshotId);
      const client = await NbdClient.connect(exp.uri);
      let same: boolean;
      try {
        const ds = await Datastore.open(new NbdDevice(client, false), { readOnly: true });
        same = (await readFile(file)).equals(await ds.readFile(disk.flatPath ?? ""));
      } finally {
        await client.close();
        await driver.deleteExport(exp.id);
      }
      out(`6. restore ${disk.name} (${formatSize(r.size)}) to ${file}: ${same ? "byte-identical" : "DIFFERENT"} to ${disk.flatPath ?? ""} read from S1 on the array\n`);

      // The negative control: the same method without the revert.
      const control = await Repository.open(join(dir, "repo-no-revert"), { create: true, chunkSize: 256 * 1024 });
      const nr = await runBackup({ vm: "vm1", repo: control, array: driver, hypervisor: hv, revert: false, log });
      const nv = await verifyPoint(control, nr.point);
      out(
        `7. negative control, same backup WITHOUT the revert: oracle ${nv.oracle?.consistent === true ? "consistent (the VM did not write between T1 and T2)" : `NOT consistent: ${nv.oracle?.violations.length ?? 0} blocks hold writes the RDM at T1 never saw acknowledged before them`}\n`,
      );
      await hv.stopWorkload({ vm: "vm1" });
      const ok = verdicts.every((v) => v.ok) && same && nv.oracle?.consistent !== true;
      out(`\n${ok ? "demo passed" : "demo FAILED"} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
      if (!ok) process.exitCode = 1;
    } finally {
      driver.close();
      hv.close();
      rpc.close();
    }
  } finally {
    await daemons?.stop();
    if (rbd) {
      try {
        cephCluster("stop", join(dir, "ceph"));
      } catch {
        /* never started: nothing to stop */
      }
    }
    await rm(dir, { recursive: true, force: true });
  }
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => (l === "" ? l : `   ${l}`))
    .join("\n");
}
