/**
 * One writer per datastore, against real daemons: two `sanbox hypervisor serve`
 * processes on one array and one datastore LUN (docs/hypervisor.md "The writer
 * lease", docs/datastore-format.md "The writer lease").
 *
 *  - The second hypervisor's `vm create` on the datastore is refused
 *    (FAILED_PRECONDITION, exit 1) naming the holder: its name, pid and id.
 *  - After kill -9 of the holder it is still refused until the lease goes
 *    stale (the holder's --lease-timeout after its last heartbeat), then it
 *    takes over and sees the first one's VM.
 *  - The first one, restarted (same data directory, same id), is refused in
 *    turn; a clone of a snapshot of the datastore carries the lease record but
 *    is not held by it; a read-only mount of the snapshot ignores it.
 *  - An array restart that outlasts the lease's validity: the holder is fenced,
 *    then takes its own lease back and answers again.
 */
import { hostname } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Datastore } from "../../src/datastore/datastore.js";
import { LEASE_OFFSET, LEASE_SIZE, decodeLease, type LeaseRecord } from "../../src/datastore/lease.js";
import { NbdClient } from "../../src/nbd/client.js";
import { NbdDevice } from "../../src/nbd/nbd-device.js";
import { connectArray } from "../../src/rpc/array-client.js";
import { startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { startHypervisor, type HypervisorDaemon } from "../support/hypervisor-daemon.js";
import { tempDir } from "../support/tools.js";

const LEASE_MS = 5000;
const HV_ARGS = ["--lease-timeout", String(LEASE_MS)];

async function leaseOn(uri: string): Promise<LeaseRecord> {
  const c = await NbdClient.connect(uri);
  try {
    const d = decodeLease(await c.read(LEASE_OFFSET, LEASE_SIZE));
    if (d.kind !== "record") throw new Error(`no lease record: ${d.kind}`);
    return d.record;
  } finally {
    await c.close();
  }
}

const names = (list: unknown): string[] => (list as { name: string }[]).map((v) => v.name).sort();

describe("datastore single writer: two hypervisors, one datastore LUN", () => {
  const tmp = tempDir("sanbox-e2e-508-");
  const arrayDir = join(tmp.dir, "array");
  const hv1Dir = join(tmp.dir, "hv1");
  const hv2Dir = join(tmp.dir, "hv2");
  let d: ArrayDaemon | undefined;
  let hv1: HypervisorDaemon | undefined;
  let hv2: HypervisorDaemon | undefined;

  beforeAll(async () => {
    d = await startArrayDaemon(arrayDir);
    const rpc = connectArray({ endpoint: d.rpcEndpoint });
    await rpc.createLun({ name: "ds", sizeBytes: 64 * 1024 * 1024 });
    rpc.close();
  });
  afterAll(async () => {
    await hv1?.stop().catch(() => undefined);
    await hv2?.stop().catch(() => undefined);
    await d?.stop();
    tmp.cleanup();
  });

  const array = (): ArrayDaemon => {
    if (d === undefined) throw new Error("no array");
    return d;
  };
  const inUseBy = (dir: string, pid: number | undefined): RegExp =>
    new RegExp(`^sanbox: FAILED_PRECONDITION: datastore ds \\(lun/ds\\) is in use by hypervisor "${hostname()}:${dir}" \\(pid ${pid ?? "?"}, id [0-9a-f]{8}…\\), last heartbeat \\d+\\.\\d s ago, stale 5 s after it$`);

  it("the second writer is refused naming the holder; after kill -9 of the holder and the lease going stale it takes over", async () => {
    hv1 = await startHypervisor(hv1Dir, array().rpcEndpoint, HV_ARGS);
    hv2 = await startHypervisor(hv2Dir, array().rpcEndpoint, HV_ARGS);
    await hv1.cli(["vm", "create", "vm1", "--datastore", "ds", "--disk", "1M"]);

    const refused = await hv2.cli(["vm", "create", "vm2", "--datastore", "ds", "--disk", "1M"], { reject: false });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr.trim()).toMatch(inUseBy(hv1Dir, hv1.pid));
    expect(names(await hv2.json(["vm", "list"]))).toEqual([]);

    // The record on the LUN: hv1's, heartbeating.
    const r1 = await leaseOn(array().uri("lun/ds"));
    expect([r1.state, r1.holder.pid, r1.holder.name, r1.timeoutMs]).toEqual(["held", hv1.pid, `${hostname()}:${hv1Dir}`, LEASE_MS]);
    await sleep(LEASE_MS / 2);
    const r2 = await leaseOn(array().uri("lun/ds"));
    expect(r2.holder.id).toBe(r1.holder.id);
    expect(r2.count).toBeGreaterThan(r1.count);
    expect(r2.heartbeatAt).toBeGreaterThan(r1.heartbeatAt);

    // kill -9: nobody releases the lease; it must go stale first.
    const lastBeat = (await leaseOn(array().uri("lun/ds"))).heartbeatAt;
    const pid1 = hv1.pid;
    await hv1.kill("SIGKILL");
    hv1 = undefined;
    const killedAt = Date.now();
    let attempts = 0;
    for (;;) {
      const r = await hv2.cli(["vm", "create", "vm2", "--datastore", "ds", "--disk", "1M"], { reject: false });
      attempts++;
      if (r.exitCode === 0) break;
      expect(r.stderr.trim()).toMatch(inUseBy(hv1Dir, pid1));
      expect(Date.now() - killedAt).toBeLessThan(LEASE_MS + 15_000);
      await sleep(200);
    }
    const tookAt = Date.now();
    expect(attempts).toBeGreaterThan(1); // refused at least once after the kill
    expect(tookAt - lastBeat).toBeGreaterThan(LEASE_MS); // not before the heartbeat was stale
    // hv2 now writes the datastore, and sees what hv1 wrote there.
    expect(names(await hv2.json(["vm", "list"]))).toEqual(["vm1", "vm2"]);
    const r3 = await leaseOn(array().uri("lun/ds"));
    expect([r3.holder.pid, r3.holder.name]).toEqual([hv2.pid, `${hostname()}:${hv2Dir}`]);
  }, 120_000);

  it("the first hypervisor, restarted, is refused in turn; a clone is not held by the parent's lease; a snapshot mounts read-only", async () => {
    if (hv2 === undefined) throw new Error("no hv2");
    hv1 = await startHypervisor(hv1Dir, array().rpcEndpoint, HV_ARGS);
    // Its remount at start was refused (logged), and so is an explicit mount.
    expect(hv1.stderr()).toMatch(/datastore ds \([^)]*\) not mounted: datastore ds \(lun\/ds\) is in use by hypervisor ".*hv2"/);
    const refused = await hv1.cli(["vm", "create", "vm9", "--datastore", "ds", "--disk", "1M"], { reject: false });
    expect(refused.stderr.trim()).toMatch(inUseBy(hv2Dir, hv2.pid));

    await array().cli(["snap", "create", "ds", "--name", "s1"]);
    await array().cli(["clone", "s1", "ds2"]);
    const copied = await leaseOn(array().uri("lun/ds2"));
    expect(copied.holder.pid).toBe(hv2.pid); // the clone's bytes carry hv2's live record…
    await hv1.cli(["vm", "create", "vm3", "--datastore", "ds2", "--disk", "1M"]); // …which names ds, not ds2
    expect((await leaseOn(array().uri("lun/ds2"))).holder.pid).toBe(hv1.pid);
    expect((await leaseOn(array().uri("lun/ds"))).holder.pid).toBe(hv2.pid);
    expect(names(await hv1.json(["vm", "list"]))).toEqual(["vm1", "vm2", "vm3"]);

    // The snapshot holds hv2's record too; a read-only mount does not care.
    const uri = (await array().cli(["export", "s1"])).stdout.trim();
    expect((await leaseOn(uri)).holder.pid).toBe(hv2.pid);
    const c = await NbdClient.connect(uri);
    try {
      const ro = await Datastore.open(new NbdDevice(c, true), { readOnly: true });
      expect((await ro.list("/")).map((e) => e.name).sort()).toEqual(["vm1", "vm2"]);
    } finally {
      await c.close();
    }
  }, 120_000);

  it("an array restart that outlasts the lease's validity: the holder is fenced, then takes its own lease back", async () => {
    if (hv2 === undefined) throw new Error("no hv2");
    const before = await leaseOn(array().uri("lun/ds"));
    await array().kill("SIGKILL");
    d = undefined;
    await sleep(LEASE_MS / 2 + 1000); // past validity (T/2) with no heartbeat
    d = await startArrayDaemon(arrayDir);
    const shown = await hv2.json(["vm", "show", "vm2"]);
    expect(shown).toMatchObject({ name: "vm2", datastoreLunName: "ds" });
    expect(hv2.stderr()).toMatch(/datastore ds \(lun\/ds\): fenced: the writer lease expired/);
    expect(hv2.stderr()).toMatch(/datastore ds: reopened at generation \d+ after (its writer lease lapsed|a path fault)/);
    const after = await leaseOn(array().uri("lun/ds"));
    expect([after.holder.id, after.holder.pid]).toEqual([before.holder.id, hv2.pid]);
    expect(after.heartbeatAt).toBeGreaterThan(before.heartbeatAt);
    await hv2.cli(["vm", "create", "vm4", "--datastore", "ds", "--disk", "1M"]);
  }, 120_000);
});
