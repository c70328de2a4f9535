/**
 * A flaky array: every snapshot export the plugin opens goes through nbdkit's
 * fault-injection front (src/nbdkit/fault-front.ts), through a vendor-style
 * driver wrapper. At the start of each backup the fault switch (nbdkit's
 * error-file) is on, so reads fail with EIO; the first retry the plugin logs
 * turns it off. That makes the fault deterministic: every backup must retry at
 * least once (a random rate could miss a run with few reads), and must still
 * produce a point that passes the oracle and equals its S1.
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Nbdkit } from "../../src/nbdkit/nbdkit.js";
import { startFaultFront } from "../../src/nbdkit/fault-front.js";
import type { Logger } from "../../src/log.js";
import { connectArray, type ArrayClient } from "../../src/rpc/array-client.js";
import type { HypervisorClient } from "../../src/rpc/hypervisor-service-def.js";
import type { ExportHandle } from "../../plugin/backup/array-driver.js";
import { runBackup } from "../../plugin/backup/backup-run.js";
import { GrpcArrayDriver } from "../../plugin/backup/grpc-array-driver.js";
import { Repository } from "../../plugin/backup/repository/repository.js";
import { verifyPoint } from "../../plugin/backup/verify-point.js";
import type { ArrayDaemon } from "../support/array-daemon.js";
import { startVmFixture, type VmFixture } from "../support/vm-fixture.js";

class FlakyDriver extends GrpcArrayDriver {
  readonly fronts: Nbdkit[] = [];
  constructor(
    rpc: ArrayClient,
    private readonly faultFile: string,
  ) {
    super(rpc);
  }
  override async exportSnapshot(snapshotId: string): Promise<ExportHandle> {
    const e = await super.exportSnapshot(snapshotId);
    const front = await startFaultFront({ upstream: e.uri, readOnly: true, error: { errno: "EIO", file: this.faultFile, ops: ["pread"] } });
    this.fronts.push(front);
    return { id: e.id, uri: front.uri };
  }
}

describe("backup against a flaky array", () => {
  let tmp: { dir: string };
  let d: ArrayDaemon;
  let hvc: HypervisorClient;

  let fx: VmFixture | undefined;
  beforeAll(async () => {
    fx = await startVmFixture("sanbox-e2e-640-", { seed: 640, warmUp: 300 });
    ({ d, hvc } = fx);
    tmp = { dir: fx.dir };
  });
  afterAll(async () => fx?.stop());

  it("retries failed reads and still takes correct, time-consistent points", async () => {
    const repo = await Repository.open(join(tmp.dir, "repo"), { create: true, chunkSize: 65536 });
    const faultFile = join(tmp.dir, "fault-on");
    const readRetries: string[] = [];
    const onWarn = (m: string): void => {
      if (!/retry \d/.test(m)) return;
      readRetries.push(m);
      rmSync(faultFile, { force: true });
    };
    const log: Logger = { error: () => undefined, warn: onWarn, info: () => undefined, debug: () => undefined, child: () => log };
    const driver = new FlakyDriver(connectArray({ endpoint: d.rpcEndpoint }), faultFile);
    try {
      for (let i = 0; i < 2; i++) {
        writeFileSync(faultFile, "");
        const before = readRetries.length;
        const s = await runBackup({ vm: "vm1", repo, array: driver, hypervisor: hvc, log });
        expect(readRetries.length, `backup ${i} retried`).toBeGreaterThan(before);
        const v = await verifyPoint(repo, s.point);
        expect(v.ok).toBe(true);
      }
    } finally {
      driver.close();
      for (const f of driver.fronts) await f.stop();
    }
    expect(readRetries.every((w) => /EIO/i.test(w)), readRetries.join("\n")).toBe(true);
  });
});
