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
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Nbdkit } from "../../src/nbdkit/nbdkit.js";
import { startFaultFront } from "../../src/nbdkit/fault-front.js";
import type { Logger } from "../../src/log.js";
import { connectArray, type ArrayClient } from "../../src/rpc/array-client.js";
import { connectHypervisor, type HypervisorClient } from "../../src/rpc/hypervisor-rpc.js";
import type { ExportHandle } from "../../plugin/backup/array-driver.js";
import { runBackup } from "../../plugin/backup/backup-run.js";
import { GrpcArrayDriver } from "../../plugin/backup/grpc-array-driver.js";
import { Repository } from "../../plugin/backup/repository/repository.js";
import { verifyPoint } from "../../plugin/backup/verify-point.js";
import { startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { startHypervisor, type HypervisorDaemon } from "../support/hypervisor-daemon.js";
import { tempDir } from "../support/tools.js";

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
  let tmp: { dir: string; cleanup: () => void };
  let d: ArrayDaemon;
  let rpc: ArrayClient;
  let hv: HypervisorDaemon;
  let hvc: HypervisorClient;

  beforeAll(async () => {
    tmp = tempDir("sanbox-e2e-640-");
    d = await startArrayDaemon(join(tmp.dir, "array"));
    rpc = connectArray({ endpoint: d.rpcEndpoint });
    await rpc.createLun({ name: "ds", sizeBytes: 64 * 1024 * 1024 });
    await rpc.createLun({ name: "rdm", sizeBytes: 4 * 1024 * 1024 });
    hv = await startHypervisor(join(tmp.dir, "hv"), d.rpcEndpoint);
    hvc = connectHypervisor({ endpoint: hv.endpoint });
    await hv.cli(["vm", "create", "vm1", "--datastore", "ds", "--disk", "2M", "--rdm", "rdm"]);
    await hv.cli(["vm", "start", "vm1", "--seed", "640"]);
    while ((await hv.client.getWorkloadStatus({ vm: "vm1" })).acknowledgedSeq < 300) await sleep(10);
  });
  afterAll(async () => {
    hvc?.close();
    await hv?.cli(["vm", "stop", "vm1"], { reject: false });
    await hv?.stop();
    rpc?.close();
    await d?.stop();
    tmp?.cleanup();
  });

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
