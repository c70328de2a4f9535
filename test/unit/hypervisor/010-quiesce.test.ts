/**
 * Quiesce semantics of a VM's runtime, without sockets: the workload runs on
 * memory devices, one of which can be made to stall. Quiesce waits for the write
 * in flight and flushes; it is idempotent; a quiesce that cannot drain in time
 * resumes the VM and fails with TIMEOUT; resume is idempotent; stop works while
 * quiesced.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { MemoryBackend } from "../../../src/nbd/backends/memory-backend.js";
import { SanboxError } from "../../../src/errors.js";
import { silentLogger } from "../../../src/log.js";
import { verifyConsistency } from "../../../src/oracle/verify.js";
import { QuiesceGate } from "../../../simulator/hypervisor/quiesce-gate.js";
import { VmRuntime, type VmIo } from "../../../simulator/hypervisor/vm-runtime.js";

class StallDevice extends MemoryBackend {
  stall: Promise<void> | undefined;
  flushes = 0;
  override async write(offset: number, data: Buffer): Promise<void> {
    if (this.stall !== undefined) await this.stall;
    return super.write(offset, data);
  }
  override async flush(): Promise<void> {
    this.flushes++;
  }
}

function io(devs: StallDevice[]): VmIo {
  return {
    disks: devs.map((d, i) => ({ id: `scsi0:${i}`, kind: "rdm" as const, size: d.size })),
    targets: devs.map((device) => ({ device })),
    flush: async () => {
      for (const d of devs) await d.flush();
    },
    close: async () => undefined,
  };
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await sleep(1);
}

describe("QuiesceGate", () => {
  it("holds entries while closed and reports drain", async () => {
    const g = new QuiesceGate();
    await g.enter();
    g.close();
    let entered = false;
    const waiting = g.enter().then(() => (entered = true));
    let drained = false;
    const d = g.drained().then(() => (drained = true));
    await sleep(5);
    expect(entered).toBe(false);
    expect(drained).toBe(false);
    g.leave();
    await d;
    expect(drained).toBe(true);
    expect(entered).toBe(false);
    g.open();
    await waiting;
    expect(g.inFlight).toBe(1);
    const ac = new AbortController();
    g.close();
    const cancelled = g.enter(ac.signal);
    ac.abort();
    await expect(cancelled).rejects.toMatchObject({ code: "CANCELLED" });
  });
});

describe("VmRuntime quiesce", () => {
  it("freezes the chain, is idempotent, and resumes it", async () => {
    const devs = [new StallDevice(256 * 1024), new StallDevice(256 * 1024)];
    const rt = new VmRuntime("vm", silentLogger, async () => undefined);
    await rt.start({ seed: 1, rate: 0, openIo: async () => io(devs) });
    await until(() => rt.status().acknowledgedSeq > 100);
    await rt.quiesce(1000);
    const frozen = rt.status().acknowledgedSeq;
    expect(rt.status().quiesced).toBe(true);
    expect(devs[0]?.flushes).toBe(1);
    await sleep(20);
    await rt.quiesce(1000); // idempotent: no second drain
    expect(rt.status().acknowledgedSeq).toBe(frozen);
    const images = devs.map((d, i) => ({ name: `d${i}`, source: d }));
    const report = await verifyConsistency(images, { horizon: frozen });
    expect(report.consistent).toBe(true);
    expect(report.prefix).toBe(frozen);
    rt.resume();
    rt.resume();
    await until(() => rt.status().acknowledgedSeq > frozen + 50);
    await rt.stop();
  });

  it("times out when the write in flight does not finish, resumes, and fails with TIMEOUT", async () => {
    const devs = [new StallDevice(64 * 1024)];
    const rt = new VmRuntime("vm", silentLogger, async () => undefined);
    await rt.start({ seed: 2, rate: 0, openIo: async () => io(devs) });
    await until(() => rt.status().acknowledgedSeq > 10);
    let release = (): void => undefined;
    const dev = devs[0];
    if (dev === undefined) throw new Error("unreachable");
    dev.stall = new Promise<void>((r) => (release = r));
    await until(() => rt.gate.inFlight === 1 && rt.status().acknowledgedSeq > 11);
    await sleep(5);
    const err = await rt.quiesce(50).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SanboxError);
    expect((err as SanboxError).code).toBe("TIMEOUT");
    expect(rt.status().quiesced).toBe(false);
    expect(rt.gate.closed).toBe(false);
    const at = rt.status().acknowledgedSeq;
    dev.stall = undefined;
    release();
    await until(() => rt.status().acknowledgedSeq > at + 20); // the VM runs on
    await rt.quiesce(1000); // and a later quiesce succeeds
    expect(rt.status().quiesced).toBe(true);
    await rt.stop(); // stop while quiesced
    expect(rt.status().state).toBe("stopped");
  });

  it("a resume during a draining quiesce makes that quiesce fail ABORTED", async () => {
    const devs = [new StallDevice(64 * 1024)];
    const rt = new VmRuntime("vm", silentLogger, async () => undefined);
    await rt.start({ seed: 3, rate: 0, openIo: async () => io(devs) });
    await until(() => rt.status().acknowledgedSeq > 10);
    let release = (): void => undefined;
    const dev = devs[0];
    if (dev === undefined) throw new Error("unreachable");
    dev.stall = new Promise<void>((r) => (release = r));
    await sleep(5);
    const q = rt.quiesce(5000).catch((e: unknown) => e);
    rt.resume();
    dev.stall = undefined;
    release();
    expect(((await q) as SanboxError).code).toBe("ABORTED");
    expect(rt.status().quiesced).toBe(false);
    await rt.stop();
  });
});
