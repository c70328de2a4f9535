/**
 * `sanbox fault-proxy`: nbdkit's nbd plugin with the error, delay and rate
 * filters in front of an array export. A clean pass-through copy is
 * byte-identical; --rate throttles a copy to roughly the rate; --error-rate
 * makes some reads fail with EIO while the others return the right data; and
 * nbdkit dying is reported as "nbdkit aborted" with exit 4, apart from our own
 * failures (exit 1/2). A VM backup through the proxy either completes and
 * verifies or fails cleanly, and honours --rate.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdCommandError } from "../../src/errors.js";
import { NbdClient } from "../../src/nbd/client.js";
import { connectArray, type ArrayClient } from "../../src/rpc/array-client.js";
import { Repository } from "../../plugin/backup/repository/repository.js";
import { verifyPoint } from "../../plugin/backup/verify-point.js";
import { obj, sanboxBackup } from "../support/backup-cli.js";
import { startHypervisor, type HypervisorDaemon } from "../support/hypervisor-daemon.js";
import { startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { runSanbox, startSanbox, type LongRunning } from "../support/sanbox-cli.js";
import { TOOL_ENV, requireTool } from "../support/tools.js";

const SIZE = 8 * 1024 * 1024;

function proxyInfo(line: string): { uri: string; pid: number } {
  const v: unknown = JSON.parse(line);
  if (typeof v !== "object" || v === null || !("uri" in v) || !("pid" in v) || typeof v.uri !== "string" || typeof v.pid !== "number") throw new Error(`bad fault-proxy output: ${line}`);
  return { uri: v.uri, pid: v.pid };
}

async function stopProxy(p: LongRunning): Promise<{ exitCode: number | undefined; signal: string | undefined }> {
  p.kill("SIGTERM");
  return p.exited;
}

describe("sanbox fault-proxy", () => {
  let dir: string;
  let array: ArrayDaemon;
  let upstream: string;
  const data = randomBytes(SIZE);

  beforeAll(async () => {
    requireTool("nbdkit");
    requireTool("nbdcopy");
    dir = mkdtempSync(join(tmpdir(), "sanbox-710-"));
    array = await startArrayDaemon(join(dir, "array"));
    await array.cli(["lun", "create", "fp", String(SIZE)]);
    upstream = array.uri("lun/fp");
    const c = await NbdClient.connect(upstream);
    await c.write(0, data);
    await c.flush();
    await c.close();
  });
  afterAll(async () => {
    await array.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("passes data through unchanged: an nbdcopy through the proxy is byte-identical", async () => {
    const p = await startSanbox(["fault-proxy", upstream, "--delay-read", "1", "--json"]);
    try {
      const { uri } = proxyInfo(p.firstLine);
      expect(uri).toMatch(/^nbd\+unix:\/\/\/\?socket=/);
      const out = join(dir, "copy.img");
      await execa(requireTool("nbdcopy"), [uri, out], { env: TOOL_ENV });
      expect(readFileSync(out).equals(data)).toBe(true);
    } finally {
      expect((await stopProxy(p)).exitCode).toBe(0);
    }
  });

  it("--rate throttles a copy to roughly the rate", async () => {
    const rate = 2 * 1024 * 1024; // bytes per second
    const p = await startSanbox(["fault-proxy", upstream, "--rate", "2M", "--json"]);
    try {
      const { uri } = proxyInfo(p.firstLine);
      const out = join(dir, "slow.img");
      const t0 = Date.now();
      await execa(requireTool("nbdcopy"), ["--requests=4", uri, out], { env: TOOL_ENV });
      const seconds = (Date.now() - t0) / 1000;
      expect(readFileSync(out).equals(data)).toBe(true);
      // nbdkit's token bucket starts full with 2 s worth of data (burstiness=2.0):
      // 8 MiB at 2 MiB/s is 4 MiB at once, then ~2 s for the rest.
      const expected = (SIZE - 2 * rate) / rate;
      expect(seconds).toBeGreaterThan(expected * 0.7);
      expect(seconds).toBeLessThan(expected * 4);
    } finally {
      expect((await stopProxy(p)).exitCode).toBe(0);
    }
  });

  it("--error-rate injects EIO into some reads; the others return the right data; nbdkit dying is reported apart", async () => {
    const p = await startSanbox(["fault-proxy", upstream, "--error-rate", "30%", "--error-ops", "read", "--json"]);
    const { uri } = proxyInfo(p.firstLine);
    const c = await NbdClient.connect(uri);
    let failed = 0;
    let ok = 0;
    for (let i = 0; i < 64; i++) {
      const off = (i * 131072) % SIZE;
      try {
        const got = await c.read(off, 65536);
        expect(got.equals(data.subarray(off, off + 65536))).toBe(true);
        ok++;
      } catch (e: unknown) {
        expect(e).toBeInstanceOf(NbdCommandError);
        expect((e as NbdCommandError).errno).toBe("EIO");
        failed++;
      }
    }
    expect(c.isOpen).toBe(true); // a command error is not a protocol error
    await c.close();
    expect(failed).toBeGreaterThan(0);
    expect(ok).toBeGreaterThan(0);
    // Known nbdkit 1.32 defect: with the error filter it may abort after a failing client disconnects.
    // Either way the proxy must say which it was.
    const early = await Promise.race([p.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 300))]);
    if (early !== undefined) {
      expect(early.exitCode).toBe(4);
      expect(p.stderr()).toMatch(/nbdkit aborted \(/);
    } else {
      expect((await stopProxy(p)).exitCode).toBe(0);
      expect(p.stderr()).not.toMatch(/nbdkit aborted/);
    }
  });

  it("reports nbdkit's death as 'nbdkit aborted (signal)' with its stderr tail and exit 4", async () => {
    const p = await startSanbox(["fault-proxy", upstream, "--json"]);
    const { pid } = proxyInfo(p.firstLine);
    process.kill(pid, "SIGABRT");
    const r = await p.exited;
    expect(r.exitCode).toBe(4);
    expect(p.stderr()).toMatch(/sanbox: nbdkit aborted \(killed by SIGABRT\)/);
  });

  it("our own failures are usage errors, never 'nbdkit aborted'", async () => {
    const badUri = await runSanbox(["fault-proxy", "http://not-nbd/"]);
    expect(badUri.exitCode).toBe(2);
    expect(badUri.stderr).toMatch(/INVALID_ARGUMENT/);
    const badRate = await runSanbox(["fault-proxy", upstream, "--error-rate", "150%"]);
    expect(badRate.exitCode).toBe(2);
    expect(badRate.stderr).toMatch(/--error-rate/);
    const badOps = await runSanbox(["fault-proxy", upstream, "--error-rate", "1%", "--error-ops", "read,frobnicate"]);
    expect(badOps.exitCode).toBe(2);
    for (const r of [badUri, badRate, badOps]) expect(r.stderr).not.toMatch(/nbdkit aborted/);
  });
});

/**
 * A backup through the proxy. The proxy stands in for the array's whole NBD
 * endpoint (--all-exports): the array's NBD socket is renamed and the proxy
 * listens on the original path, so every URI the array hands out (the
 * snapshot exports of the backup) goes through nbdkit's filters. The VM's
 * workload keeps its connections, opened before the swap, to the array itself.
 */
describe("sanbox backup run through sanbox fault-proxy", () => {
  let tmp: string;
  let array: ArrayDaemon;
  let rpc: ArrayClient;
  let hv: HypervisorDaemon;
  let realSocket: string;

  beforeAll(async () => {
    requireTool("nbdkit");
    tmp = mkdtempSync(join(tmpdir(), "sanbox-710b-"));
    array = await startArrayDaemon(join(tmp, "array"));
    rpc = connectArray({ endpoint: array.rpcEndpoint });
    await rpc.createLun({ name: "ds", sizeBytes: 64 * 1024 * 1024 });
    await rpc.createLun({ name: "rdm", sizeBytes: 4 * 1024 * 1024 });
    hv = await startHypervisor(join(tmp, "hv"), array.rpcEndpoint);
    await hv.cli(["vm", "create", "vm1", "--datastore", "ds", "--disk", "2M", "--rdm", "rdm"]);
    await hv.cli(["vm", "start", "vm1", "--seed", "710"]);
    while ((await hv.client.getWorkloadStatus({ vm: "vm1" })).acknowledgedSeq < 100) await sleep(10);
    realSocket = join(tmp, "array-real-nbd.sock");
    renameSync(array.nbdSocket, realSocket);
  });
  afterAll(async () => {
    await hv?.cli(["vm", "stop", "vm1"], { reject: false });
    await hv?.stop();
    rpc?.close();
    if (realSocket !== undefined) renameSync(realSocket, array.nbdSocket);
    await array?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  const proxy = (extra: string[]): Promise<LongRunning> => {
    rmSync(array.nbdSocket, { force: true }); // an aborted nbdkit leaves its socket file
    return startSanbox(["fault-proxy", `nbd+unix:///?socket=${realSocket}`, "--all-exports", "--unix", array.nbdSocket, "--json", ...extra]);
  };

  const backup = (repo: string): Promise<{ stdout: string; stderr: string; exitCode: number }> =>
    sanboxBackup(["backup", "run", "vm1", "--repo", repo, "--array", array.rpcEndpoint, "--hypervisor", hv.endpoint, "--chunk-size", "64K", "--json"]);

  const backupSnapshots = async (): Promise<string[]> => (await rpc.listSnapshots({})).snapshots.filter((s) => s.name.startsWith("sanbox-backup-")).map((s) => s.name);

  it("at a 1% read error rate either completes and verifies, or fails cleanly: no partial point, no leaked snapshot", async () => {
    const repo = join(tmp, "repo-errors");
    const before = await backupSnapshots();
    const p = await proxy(["--error-rate", "1%", "--error-ops", "read"]);
    const r = await backup(repo);
    const proxyExit = await Promise.race([p.exited, sleep(200).then(() => undefined)]);
    if (proxyExit === undefined) expect((await stopProxy(p)).exitCode).toBe(0);
    else {
      // Not our bug: the known nbdkit 1.32 abort. The backup must still have failed cleanly.
      expect(proxyExit.exitCode).toBe(4);
      expect(p.stderr()).toMatch(/nbdkit aborted/);
    }
    const points = await (await Repository.open(repo)).list("vm1");
    if (process.env.SANBOX_TEST_DEBUG !== undefined) process.stderr.write(`backup exit ${r.exitCode}, proxy ${JSON.stringify(proxyExit)}: ${r.stderr}\n${p.stderr()}\n`);
    if (r.exitCode === 0) {
      const s = obj(JSON.parse(r.stdout));
      const point = await (await Repository.open(repo)).get(String(s["point"]));
      expect((await verifyPoint(await Repository.open(repo), point)).ok).toBe(true);
      expect(points).toHaveLength(1);
    } else {
      expect(r.stderr).toMatch(/^sanbox: [A-Z_]+: /m);
      expect(points).toHaveLength(0);
      expect(await backupSnapshots()).toEqual(before);
    }
  });

  it("at a 100% read error rate fails cleanly (which also proves the backup's reads go through the proxy)", async () => {
    const repo = join(tmp, "repo-broken");
    const before = await backupSnapshots();
    const p = await proxy(["--error-rate", "100%", "--error-ops", "read"]);
    const r = await backup(repo);
    const proxyExit = await Promise.race([p.exited, sleep(200).then(() => undefined)]);
    if (proxyExit === undefined) await stopProxy(p);
    else expect(p.stderr()).toMatch(/nbdkit aborted/);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/^sanbox: [A-Z_]+: /m);
    expect(await (await Repository.open(repo)).list("vm1")).toHaveLength(0);
    expect(await backupSnapshots()).toEqual(before);
  });

  it("with --rate the backup honours the bandwidth and still finishes", async () => {
    const rate = 1024 * 1024;
    const repo = join(tmp, "repo-rate");
    const p = await proxy(["--rate", "1M"]);
    try {
      const t0 = Date.now();
      const r = await backup(repo);
      const seconds = (Date.now() - t0) / 1000;
      expect(r.exitCode, r.stderr).toBe(0);
      const s = obj(JSON.parse(r.stdout));
      const bytes = Number(s["arrayBytesRead"]);
      expect(bytes).toBeGreaterThan(0);
      // The token bucket lets 2 s worth through at once; the rest flows at the rate.
      expect(bytes).toBeGreaterThan(3 * rate);
      expect(seconds).toBeGreaterThanOrEqual(((bytes - 2 * rate) / rate) * 0.7);
      const repoObj = await Repository.open(repo);
      expect((await verifyPoint(repoObj, await repoObj.get(String(s["point"])))).ok).toBe(true);
    } finally {
      expect((await stopProxy(p)).exitCode).toBe(0);
    }
  });
});
