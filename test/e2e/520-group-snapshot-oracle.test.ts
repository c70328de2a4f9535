/**
 * The oracle on real array snapshots. While the hypervisor runs the VM's
 * dependent-write chain (2 VMDKs on the datastore LUN, 1 RDM LUN), the array
 * cuts one group snapshot of the datastore LUN and the RDM LUN: the disk images
 * cut from it (VMDK flat files read through the datastore on the snapshot
 * export, the RDM snapshot export) hold a prefix of the chain. A VMDK set from
 * a LATER snapshot of the datastore, with the RDM from the earlier group, does
 * not (the plugin's revert step exists for this), and the oracle names the
 * offending blocks; `sanbox verify-consistency` exits 1 on it.
 */
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdDevice } from "../../src/nbd/nbd-device.js";
import { Datastore } from "../../src/datastore/datastore.js";
import { DatastoreFileDevice } from "../../src/datastore/file-device.js";
import { readVm } from "../../src/datastore/vm-files.js";
import { NbdClient } from "../../src/nbd/client.js";
import { verifyConsistency, type NamedImage } from "../../src/oracle/verify.js";
import { connectArray, type ArrayClient } from "../../src/rpc/array-client.js";
import { startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { startHypervisor, type HypervisorDaemon } from "../support/hypervisor-daemon.js";
import { TOOL_ENV, tempDir } from "../support/tools.js";
import { sanboxBin } from "../../src/package-root.js";

const MAIN = sanboxBin();

describe("oracle on array group snapshots of a running VM", () => {
  let tmp: { dir: string; cleanup: () => void };
  let d: ArrayDaemon;
  let rpc: ArrayClient;
  let hv: HypervisorDaemon;
  const open: NbdClient[] = [];

  beforeAll(async () => {
    tmp = tempDir("sanbox-e2e-520-");
    d = await startArrayDaemon(join(tmp.dir, "array"));
    rpc = connectArray({ endpoint: d.rpcEndpoint });
    await rpc.createLun({ name: "ds", sizeBytes: 128 * 1024 * 1024 });
    await rpc.createLun({ name: "rdm", sizeBytes: 4 * 1024 * 1024 });
    hv = await startHypervisor(join(tmp.dir, "hv"), d.rpcEndpoint);
  });
  afterAll(async () => {
    for (const c of open) await c.close().catch(() => undefined);
    await hv?.stop();
    rpc?.close();
    await d?.stop();
    tmp?.cleanup();
  });

  async function connect(exportName: string): Promise<NbdClient> {
    const c = await NbdClient.connect(d.uri(exportName));
    open.push(c);
    return c;
  }

  /** The VM's VMDK flat files in a datastore snapshot, as oracle images. */
  async function vmdkImages(snapshotId: string): Promise<NamedImage[]> {
    const ds = await Datastore.open(new NbdDevice(await connect(`snap/${snapshotId}/ds`), false), { readOnly: true });
    const vm = await readVm(ds, "/vm1");
    const out: NamedImage[] = [];
    for (const disk of vm.disks) if (disk.flatPath !== undefined) out.push({ name: `${snapshotId}:${disk.flatPath}`, source: await DatastoreFileDevice.open(ds, disk.flatPath) });
    return out;
  }

  it("images cut from one group snapshot pass; a later VMDK with the earlier RDM fails, naming offsets", async () => {
    const dsLun = await rpc.getLun({ name: "ds" });
    const rdmLun = await rpc.getLun({ name: "rdm" });
    await hv.cli(["vm", "create", "vm1", "--datastore", "ds", "--disk", "2M", "--disk", "2M", "--rdm", "rdm"]);
    await hv.cli(["vm", "start", "vm1", "--seed", "520"]);
    const acked = async (): Promise<number> => (await hv.client.getWorkloadStatus({ vm: "vm1" })).acknowledgedSeq;
    while ((await acked()) < 400) await sleep(10);

    const before = await acked();
    const group = await rpc.createSnapshot({ name: "t1", lunIds: [dsLun.lunId, rdmLun.lunId] });
    const after = await acked();
    const s1ds = group.snapshots.find((s) => s.lunId === dsLun.lunId);
    const s1rdm = group.snapshots.find((s) => s.lunId === rdmLun.lunId);
    if (s1ds === undefined || s1rdm === undefined) throw new Error("group snapshot lacks a member");
    expect(group.groupSnapshotId).not.toBe("");

    // Let the VM write on, then snapshot the datastore alone (a T2 without quiesce).
    while ((await acked()) < after + 400) await sleep(10);
    const later = await rpc.createSnapshot({ name: "t2", lunIds: [dsLun.lunId] });
    const s2ds = later.snapshots[0];
    if (s2ds === undefined) throw new Error("no snapshot");
    await hv.cli(["vm", "stop", "vm1"]);

    const rdmAtT1: NamedImage = { name: "rdm@t1", source: await connect(`snap/${s1rdm.snapshotId}/rdm`) };
    // The cut holds the state after some operation in [before, after + 1]; replaying no further
    // than that keeps trailing no-op trims (of blocks already zero) from stretching the prefix.
    const good = await verifyConsistency([...(await vmdkImages(s1ds.snapshotId)), rdmAtT1], { horizon: after + 1 });
    expect(good.violations).toEqual([]);
    expect(good.consistent).toBe(true);
    expect(good.prefix).toBeGreaterThanOrEqual(before);
    expect(good.prefix).toBeLessThanOrEqual(after + 1);

    const mixed = await verifyConsistency([...(await vmdkImages(s2ds.snapshotId)), rdmAtT1]);
    expect(mixed.consistent).toBe(false);
    expect(mixed.violations.length).toBeGreaterThan(0);
    for (const v of mixed.violations) {
      expect(["scsi0:0", "scsi0:1", "scsi0:2"]).toContain(v.disk);
      expect(Number.isSafeInteger(v.offset)).toBe(true);
    }

    // The same verdicts from the command line, with the datastore snapshot export as --datastore.
    const cli = (ds: string, rdm: string) =>
      execa("node", [MAIN, "verify-consistency", "--datastore", d.uri(`snap/${ds}/ds`), "--vm", "/vm1", d.uri(`snap/${rdm}/rdm`)], { env: { ...TOOL_ENV, SANBOX_LOG: "warn" }, reject: false });
    const ok = await cli(s1ds.snapshotId, s1rdm.snapshotId);
    expect(ok.exitCode).toBe(0);
    const bad = await cli(s2ds.snapshotId, s1rdm.snapshotId);
    expect(bad.exitCode).toBe(1);
    const first = mixed.violations[0];
    if (first === undefined) throw new Error("unreachable");
    expect(String(bad.stdout) + String(bad.stderr)).toContain(`offset ${first.offset}`);
  });
});
