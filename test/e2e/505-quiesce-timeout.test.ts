/**
 * A quiesce that cannot drain times out safely, against real daemons: the array
 * process is frozen (SIGSTOP), so the VM's in-flight guest write cannot complete.
 * `quiesce --timeout` must answer TIMEOUT within about its timeout, leave the VM
 * running (not quiesced, new writes not held), and once the array thaws the same
 * dependent-write chain goes on; a later quiesce succeeds and the disks pass the
 * oracle.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdClient } from "../../src/nbd/client.js";
import { Datastore } from "../../src/datastore/datastore.js";
import { NbdDevice } from "../../src/nbd/nbd-device.js";
import { DatastoreFileDevice } from "../../src/datastore/file-device.js";
import { readVm } from "../../src/datastore/vm-files.js";
import { verifyConsistency, type NamedImage } from "../../src/oracle/verify.js";
import type { ArrayDaemon } from "../support/array-daemon.js";
import type { HypervisorDaemon } from "../support/hypervisor-daemon.js";
import { startVmFixture, type VmFixture } from "../support/vm-fixture.js";

async function images(d: ArrayDaemon): Promise<NamedImage[]> {
  const ds = await NbdClient.connect(d.uri("lun/ds"));
  const rdm = await NbdClient.connect(d.uri("lun/rdm"));
  try {
    const fs = await Datastore.open(new NbdDevice(ds, false), { readOnly: true });
    const out: NamedImage[] = [];
    for (const disk of (await readVm(fs, "/vm1")).disks) {
      let b: Buffer;
      if (disk.flatPath !== undefined) {
        const f = await DatastoreFileDevice.open(fs, disk.flatPath);
        b = await f.read(0, f.size);
      } else b = await rdm.read(0, rdm.size);
      out.push({ name: disk.flatPath ?? "rdm", source: { size: b.length, read: async (o, n) => b.subarray(o, o + n) } });
    }
    return out;
  } finally {
    await ds.close();
    await rdm.close();
  }
}

describe("quiesce against a frozen array", () => {
  let d: ArrayDaemon;
  let hv: HypervisorDaemon;
  let frozenPid: number | undefined;

  let fx: VmFixture | undefined;
  beforeAll(async () => {
    fx = await startVmFixture("sanbox-e2e-505-", { seed: 505, warmUp: 100 });
    ({ d, hv } = fx);
  });
  afterAll(async () => {
    if (frozenPid !== undefined) process.kill(frozenPid, "SIGCONT");
    await fx?.stop();
  });

  it("times out, resumes, and the chain continues once the array thaws", async () => {
    const status = (): Promise<{ acknowledgedSeq: number; quiesced: boolean }> => hv.client.getWorkloadStatus({ vm: "vm1" });
    while ((await status()).acknowledgedSeq < 100) await sleep(10);

    const pid = d.pid;
    if (pid === undefined) throw new Error("the array daemon has no pid");
    process.kill(pid, "SIGSTOP");
    frozenPid = pid;
    await sleep(200); // the workload's next write is now stuck in the frozen array
    const stuckAt = (await status()).acknowledgedSeq;

    const t0 = Date.now();
    const q = await hv.cli(["vm", "quiesce", "vm1", "--timeout", "500"], { reject: false });
    const elapsed = Date.now() - t0;
    expect(q.exitCode).not.toBe(0);
    expect(q.stderr).toMatch(/TIMEOUT|DEADLINE/);
    expect(q.stderr).toMatch(/did not drain.*within 500 ms; resumed/);
    expect(elapsed).toBeLessThan(10_000); // the CLI's start-up included; the quiesce itself waited ~500 ms

    // (Not `vm show`: it reads the VMX from the datastore, which is on the frozen array.)
    const after = await status();
    expect(after.quiesced).toBe(false);
    expect(after.acknowledgedSeq).toBe(stuckAt); // nothing completed while frozen

    process.kill(pid, "SIGCONT");
    frozenPid = undefined;
    while ((await status()).acknowledgedSeq < stuckAt + 100) await sleep(10); // not held by a leftover quiesce

    const ok = (await hv.json(["vm", "quiesce", "vm1", "--timeout", "5000"])) as Record<string, unknown>;
    expect(ok["quiesced"]).toBe(true);
    const frozenSeq = Number(ok["acknowledgedSeq"]);
    const r = await verifyConsistency(await images(d), { horizon: frozenSeq });
    expect(r.violations).toEqual([]);
    expect(r.prefix).toBe(frozenSeq);
    expect(r.seed).toBe(505);
    await hv.cli(["vm", "resume", "vm1"]);
  });
});
