/**
 * The simulated hypervisor against a real array daemon, both started as a user
 * would. A VM with two VMDKs (files on a datastore LUN) and one RDM (a whole
 * LUN) runs the dependent-write workload. Quiesce freezes the disks: two reads
 * during the quiesce agree byte for byte, hold exactly the acknowledged prefix
 * (the oracle), and the acknowledgement counter stands still. Resume continues
 * the same chain.
 */
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
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
import { tempDir } from "../support/tools.js";

function obj(v: unknown): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`expected an object: ${JSON.stringify(v)}`);
  return v as Record<string, unknown>;
}

/** Reads every disk of the VM from the live LUNs: VMDKs through a read-only mount of the datastore, the RDM from its export. */
async function readDisks(d: ArrayDaemon, vm: string): Promise<{ images: NamedImage[]; bytes: Buffer[] }> {
  const dsClient = await NbdClient.connect(d.uri("lun/ds"));
  const rdmClient = await NbdClient.connect(d.uri("lun/rdm"));
  try {
    const ds = await Datastore.open(new NbdDevice(dsClient, false), { readOnly: true });
    const info = await readVm(ds, `/${vm}`);
    const images: NamedImage[] = [];
    const bytes: Buffer[] = [];
    for (const disk of info.disks) {
      if (disk.flatPath !== undefined) {
        const f = await DatastoreFileDevice.open(ds, disk.flatPath);
        const b = await f.read(0, f.size);
        bytes.push(b);
        images.push({ name: disk.flatPath, source: { size: b.length, read: async (o, n) => b.subarray(o, o + n) } });
      } else {
        const b = await rdmClient.read(0, rdmClient.size);
        bytes.push(b);
        images.push({ name: "rdm", source: { size: b.length, read: async (o, n) => b.subarray(o, o + n) } });
      }
    }
    return { images, bytes };
  } finally {
    await dsClient.close();
    await rdmClient.close();
  }
}

describe("sanbox hypervisor serve: workload, quiesce, resume", () => {
  let tmp: { dir: string; cleanup: () => void };
  let d: ArrayDaemon;
  let rpc: ArrayClient;
  let hv: HypervisorDaemon;

  beforeAll(async () => {
    tmp = tempDir("sanbox-e2e-500-");
    d = await startArrayDaemon(join(tmp.dir, "array"));
    rpc = connectArray({ endpoint: d.rpcEndpoint });
    await rpc.createLun({ name: "ds", sizeBytes: 128 * 1024 * 1024 });
    await rpc.createLun({ name: "rdm", sizeBytes: 8 * 1024 * 1024 });
    hv = await startHypervisor(join(tmp.dir, "hv"), d.rpcEndpoint);
  });
  afterAll(async () => {
    await hv?.stop();
    rpc?.close();
    await d?.stop();
    tmp?.cleanup();
  });

  it("creates a VM with 2 VMDKs and 1 RDM (formatting the blank datastore LUN)", async () => {
    const vm = obj(await hv.json(["vm", "create", "vm1", "--datastore", "ds", "--disk", "4M", "--disk", "2M", "--rdm", "rdm"]));
    const disks = vm["disks"] as Record<string, unknown>[];
    expect(disks.map((x) => [x["slot"], x["kind"], x["capacityBytes"]])).toEqual([
      ["scsi0:0", "VMDK", 4 * 1024 * 1024],
      ["scsi0:1", "VMDK", 2 * 1024 * 1024],
      ["scsi0:2", "RDM", 8 * 1024 * 1024],
    ]);
    const lun = await rpc.getLun({ name: "rdm" });
    expect(disks[2]?.["rdmNaa"]).toBe(lun.naa);
    expect(disks[2]?.["rdmLunName"]).toBe("rdm");
    expect((await hv.cli(["vm", "list"])).stdout).toMatch(/^vm1\s+ds\s+3\s+stopped/m);
    const dup = await hv.cli(["vm", "create", "vm1", "--datastore", "ds", "--disk", "1M"], { reject: false });
    expect(dup.exitCode).toBe(1);
    expect(dup.stderr).toMatch(/ALREADY_EXISTS/);
    const missing = await hv.cli(["vm", "show", "nope"], { reject: false });
    expect(missing.stderr).toMatch(/NOT_FOUND/);
  });

  it("quiesce freezes the stamps and the counter; resume continues the chain", async () => {
    await hv.cli(["vm", "start", "vm1", "--seed", "500"]);
    const acked = async (): Promise<number> => (await hv.client.getWorkloadStatus({ vm: "vm1" })).acknowledgedSeq;
    while ((await acked()) < 300) await sleep(20);

    const busy = await hv.cli(["vm", "delete", "vm1"], { reject: false });
    expect(busy.stderr).toMatch(/FAILED_PRECONDITION/);

    const q = obj(await hv.json(["vm", "quiesce", "vm1", "--timeout", "5000"]));
    expect(q["quiesced"]).toBe(true);
    expect(q["state"]).toBe("RUNNING");
    const frozen = Number(q["acknowledgedSeq"]);
    expect(frozen).toBeGreaterThanOrEqual(300);

    const first = await readDisks(d, "vm1");
    await sleep(300);
    expect(await acked()).toBe(frozen);
    const again = obj(await hv.json(["vm", "quiesce", "vm1"])); // idempotent
    expect(again["acknowledgedSeq"]).toBe(frozen);
    const second = await readDisks(d, "vm1");
    expect(await acked()).toBe(frozen);
    for (const [i, b] of first.bytes.entries()) expect(second.bytes[i]?.equals(b)).toBe(true);

    const r1 = await verifyConsistency(first.images, { horizon: frozen });
    const r2 = await verifyConsistency(second.images, { horizon: frozen });
    expect(r1.violations).toEqual([]);
    expect(r1.consistent).toBe(true);
    expect(r1.prefix).toBe(frozen);
    expect(r2.prefix).toBe(frozen);
    expect(r1.seed).toBe(500);
    expect(r1.disks.map((x) => x.id)).toEqual(["scsi0:0", "scsi0:1", "scsi0:2"]);

    const resumed = obj(await hv.json(["vm", "resume", "vm1"]));
    expect(resumed["quiesced"]).toBe(false);
    await hv.cli(["vm", "resume", "vm1"]); // idempotent
    while ((await acked()) < frozen + 200) await sleep(20);

    const stopped = obj(await hv.json(["vm", "stop", "vm1"]));
    expect(stopped["state"]).toBe("STOPPED");
    const end = Number(stopped["acknowledgedSeq"]);
    const final = await readDisks(d, "vm1");
    const r3 = await verifyConsistency(final.images, { horizon: end });
    expect(r3.violations).toEqual([]);
    expect(r3.prefix).toBe(end);
    expect(r3.seed).toBe(500); // the same chain, continued

    // Starting again without a seed continues the chain where it stopped.
    const cont = obj(await hv.json(["vm", "start", "vm1"]));
    expect(cont["seed"]).toBe(500);
    while ((await acked()) < end + 50) await sleep(20);
    await hv.cli(["vm", "stop", "vm1"]);
  });

  it("deletes the VM and keeps the inventory across a hypervisor restart", async () => {
    await hv.cli(["vm", "create", "vm2", "--datastore", "ds", "--disk", "1M"]);
    await hv.cli(["vm", "delete", "vm1"]);
    await hv.stop();
    hv = await startHypervisor(join(tmp.dir, "hv"), d.rpcEndpoint);
    const list = (await hv.json(["vm", "list"])) as Record<string, unknown>[];
    expect(list.map((v) => v["name"])).toEqual(["vm2"]);
  });
});
