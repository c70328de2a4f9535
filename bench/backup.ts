/**
 * `npm run bench -- backup`: the backup plugin against peers in the same run.
 *
 *  1. A VM (2 VMDKs + 1 RDM, `--disk` each, default 32 MiB) filled by its
 *     workload, then a full backup and an incremental while it writes:
 *     - time of each against `nbdcopy` copying the same disks in full (the
 *       datastore snapshot export and the RDM snapshot export, to files);
 *     - bytes the incremental read from the array against what the array's CBT
 *       said changed plus the bytes the revert rewrote (target <= 1.1x).
 *       Reads are counted by the plugin's NBD reader (the array keeps no read
 *       counters); datastore metadata reads for parsing S1/S2 are not included.
 *  2. Revert cost: a flat file of 16, 64 and 256 MiB on a datastore LUN, the
 *     same 2 MiB changed between S1 and S2 (flat in disk size), then 512 KiB,
 *     2 MiB and 8 MiB changed on 64 MiB (linear in change). Peer: reading the
 *     whole file back from S1, which is what the revert avoids.
 */
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { NbdDevice } from "../src/nbd/nbd-device.js";
import { Datastore } from "../src/datastore/datastore.js";
import { totalLength } from "../src/extents/index.js";
import { NbdClient } from "../src/nbd/client.js";
import { connectArray } from "../src/rpc/array-client.js";
import { collect } from "../src/rpc/client.js";
import { hv1 } from "../src/rpc/hypervisor-proto.js";
import { connectHypervisor } from "../src/rpc/hypervisor-service-def.js";
import { parseSize } from "../src/size.js";
import { startArrayAndHypervisor } from "../cli/child-daemons.js";
import { runBackup } from "../plugin/backup/backup-run.js";
import { copyExtents } from "../plugin/backup/copy-extents.js";
import { ExportReader } from "../plugin/backup/export-reader.js";
import { GrpcArrayDriver } from "../plugin/backup/grpc-array-driver.js";
import { Repository } from "../plugin/backup/repository/repository.js";
import { planRevert } from "../plugin/backup/revert-plan.js";
import { argValue, progress, scratch } from "./harness.js";
import type { BenchResult, BenchRow } from "./report.js";

const MiB = 1024 * 1024;

async function nbdcopyMs(uris: string[], dir: string): Promise<number> {
  const t0 = performance.now();
  for (const [i, u] of uris.entries()) await execa("nbdcopy", [u, join(dir, `copy-${i}.img`)]);
  return performance.now() - t0;
}

export async function run(argv: string[]): Promise<BenchResult> {
  const disk = parseSize(argValue(argv, "--disk") ?? "32M");
  const rows: BenchRow[] = [];
  const notes: string[] = [];
  const s = scratch("backup");
  const daemons = await startArrayAndHypervisor(s.dir);
  const rpc = connectArray({ endpoint: daemons.array });
  const hv = connectHypervisor({ endpoint: daemons.hypervisor });
  const driver = GrpcArrayDriver.connect({ endpoint: daemons.array });
  try {
    // ---- 1. the method on a VM
    await rpc.createLun({ name: "ds", sizeBytes: 4 * disk + 64 * MiB });
    await rpc.createLun({ name: "rdm", sizeBytes: disk });
    await hv.createVm({ name: "vm1", datastoreLun: "ds", disks: [{ kind: hv1.DiskKind.VMDK, capacityBytes: disk }, { kind: hv1.DiskKind.VMDK, capacityBytes: disk }, { kind: hv1.DiskKind.RDM, lun: "rdm" }] });
    // Fill the disks so the full copy has data (the workload writes 4 KiB blocks at random).
    progress(`filling ${(3 * disk) / MiB} MiB of VM disks`);
    await hv.startWorkload({ vm: "vm1", seed: 1 });
    const acked = async (): Promise<number> => (await hv.getWorkloadStatus({ vm: "vm1" })).acknowledgedSeq;
    const fillOps = Math.min(20_000, (3 * disk) / 4096 / 2);
    while ((await acked()) < fillOps) await sleep(50);
    await hv.stopWorkload({ vm: "vm1" });
    await hv.startWorkload({ vm: "vm1", rate: 200 });
    const repo = await Repository.open(join(s.dir, "repo"), { create: true });
    progress("full backup");
    const t0 = performance.now();
    const full = await runBackup({ vm: "vm1", repo, array: driver, hypervisor: hv });
    const fullMs = performance.now() - t0;
    // The peer: nbdcopy of the same disks in full, from the snapshots the full backup cut.
    const dsSnap = full.point.base.snapshots.find((x) => x.lunId === full.point.datastoreLunId);
    const rdmSnap = full.point.base.snapshots.find((x) => x.lunId !== full.point.datastoreLunId);
    if (dsSnap === undefined || rdmSnap === undefined) throw new Error("no base snapshots");
    const e1 = await driver.exportSnapshot(dsSnap.snapshotId);
    const e2 = await driver.exportSnapshot(rdmSnap.snapshotId);
    const copyMs = await nbdcopyMs([e1.uri, e2.uri], s.dir);
    await driver.deleteExport(e1.id);
    await driver.deleteExport(e2.id);
    rows.push({ case: `full backup, 3 x ${disk / MiB} MiB`, ours: fullMs, peer: "nbdcopy ds+rdm snapshots", peerValue: copyMs, ratio: copyMs / fullMs, unit: "ms" });
    await sleep(1000);
    progress("incremental backup");
    const readBefore = (await rpc.getPoolStats({})).nbdSnapshotBytesRead;
    const t1 = performance.now();
    const inc = await runBackup({ vm: "vm1", repo, array: driver, hypervisor: hv });
    const incMs = performance.now() - t1;
    // Array-side: every byte the array's snapshot exports served during the
    // incremental (the VM's own I/O goes to live LUN exports and is not counted).
    const arrayRead = (await rpc.getPoolStats({})).nbdSnapshotBytesRead - readBefore;
    rows.push({ case: "incremental backup (1 s of writes at 200 op/s)", ours: incMs, peer: "nbdcopy ds+rdm snapshots", peerValue: copyMs, ratio: copyMs / incMs, unit: "ms" });
    const reverted = inc.disks.reduce((n, d) => n + d.bytesReverted, 0);
    const budget = inc.changedBytes + reverted;
    rows.push({
      case: "incremental: bytes read (array-side counter) vs CBT changed + reverted",
      ours: arrayRead / MiB,
      peer: "CBT changed + reverted",
      peerValue: budget / MiB,
      ratio: budget / Math.max(1, arrayRead),
      unit: "MiB",
      note: `read/budget = ${(arrayRead / Math.max(1, budget)).toFixed(2)}x, target <= 1.1x; the plugin's own count: ${(inc.arrayBytesRead / MiB).toFixed(2)} MiB, the rest is datastore metadata parsing`,
    });
    notes.push(`quiesce windows: full ${full.quiesceWindowMs} ms, incremental ${inc.quiesceWindowMs} ms; T1->T2 change on the datastore ${(inc.t1t2ChangedBytes / MiB).toFixed(2)} MiB, reverted ${(reverted / MiB).toFixed(2)} MiB`);
    await hv.stopWorkload({ vm: "vm1" });

    // ---- 2. revert cost
    const cases: [number, number][] = [
      [16 * MiB, 2 * MiB],
      [64 * MiB, 2 * MiB],
      [256 * MiB, 2 * MiB],
      [64 * MiB, MiB / 2],
      [64 * MiB, 8 * MiB],
    ];
    const scratchRepo = await Repository.open(join(s.dir, "repo-revert"), { create: true });
    for (const [i, [size, change]] of cases.entries()) {
      progress(`revert: ${size / MiB} MiB file, ${change / MiB} MiB changed`);
      const lun = await rpc.createLun({ name: `rv${i}`, sizeBytes: size + 64 * MiB });
      const ex = await rpc.createExport({ lunId: lun.lunId });
      const live = await NbdClient.connect(ex.uri);
      const ds = await Datastore.format(new NbdDevice(live, false));
      await ds.create("/f", { size });
      const block = Buffer.alloc(4 * MiB, 0x5a);
      for (let at = 0; at < size; at += block.length) await ds.write("/f", at, block.subarray(0, Math.min(block.length, size - at)));
      await ds.flush();
      const s1 = (await rpc.createSnapshot({ name: `rv${i}-s1`, lunIds: [lun.lunId] })).snapshots[0];
      const piece = Buffer.alloc(64 * 1024, 0xa5);
      for (let n = 0; n < change / piece.length; n++) await ds.write("/f", Math.floor(Math.random() * (size / piece.length)) * piece.length, piece);
      await ds.flush();
      const s2 = (await rpc.createSnapshot({ name: `rv${i}-s2`, lunIds: [lun.lunId] })).snapshots[0];
      await live.close();
      await rpc.deleteExport({ exportId: ex.exportId });
      if (s1 === undefined || s2 === undefined) throw new Error("no snapshot");
      const x1 = await driver.exportSnapshot(s1.snapshotId);
      const x2 = await driver.exportSnapshot(s2.snapshotId);
      const c1 = await NbdClient.connect(x1.uri);
      const c2 = await NbdClient.connect(x2.uri);
      const st1 = { map: await (await Datastore.open(new NbdDevice(c1, false), { readOnly: true })).extentMap("/f"), size };
      const st2 = { map: await (await Datastore.open(new NbdDevice(c2, false), { readOnly: true })).extentMap("/f"), size };
      const reader = await ExportReader.open(x1.uri);
      const pending = await scratchRepo.begin(`rv${i}`);
      const image = pending.image(undefined);
      await image.resize(size);
      const r0 = performance.now();
      const changed = (await collect(driver.changedExtents(s1.snapshotId, s2.snapshotId))).map((e) => ({ offset: e.offset, length: e.length }));
      const plan = planRevert(st2, st1, changed);
      await copyExtents(reader, plan, image);
      const revertMs = performance.now() - r0;
      const p0 = performance.now();
      for (let at = 0; at < size; at += 4 * MiB) await reader.read(st1.map.length > 0 ? at : 0, Math.min(4 * MiB, size - at));
      const fullReadMs = performance.now() - p0;
      await pending.abandon();
      await reader.close();
      await c1.close();
      await c2.close();
      await driver.deleteExport(x1.id);
      await driver.deleteExport(x2.id);
      rows.push({
        case: `revert, ${size / MiB} MiB file, ${change / MiB} MiB changed`,
        ours: revertMs,
        peer: "read the whole file from S1",
        peerValue: fullReadMs,
        ratio: fullReadMs / revertMs,
        unit: "ms",
        note: `reverted ${(totalLength(plan.touched) / MiB).toFixed(2)} MiB`,
      });
    }
    notes.push("revert rows: cost should stay flat across file sizes at a fixed change and grow with the change");
  } finally {
    driver.close();
    hv.close();
    rpc.close();
    await daemons.stop();
    s.cleanup();
  }
  return { bench: "backup", rows, notes };
}
