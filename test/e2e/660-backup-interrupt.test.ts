/**
 * SIGINT and SIGTERM in the middle of a copy, sent to real `sanbox` processes.
 * `backup run`, `restore` and `backup export` stop within about 2 s, delete
 * the snapshots and exports they made, release their lock, remove their own
 * tmp/ entry, say what they cleaned on stderr and exit 130 / 143. A second
 * signal exits at once, and the next run cleans up what it left. An
 * interrupted `backup run --full` leaves the latest point's base in place, so
 * the next run is still an incremental over CBT.
 *
 * "In the middle of a copy" is made sure, not hoped for: each command runs
 * with --progress=json, and the signal goes only once a progress line shows a
 * copy started; the copies are long enough (a 128 MiB RDM full of random
 * data, `--parallel 1`; a restore through `sanbox fault-proxy` delaying every
 * write by 1 s; a restore into a new LUN writes those 128 MiB) that they are
 * still running when it lands. A restore into a LUN it created deletes that
 * LUN when stopped; a LUN that existed (--force) stays.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdClient } from "../../src/nbd/client.js";
import { obj, sanboxBackup, spawnBackup } from "../support/backup-cli.js";
import { startSanbox } from "../support/sanbox-cli.js";
import { startVmFixture, type VmFixture } from "../support/vm-fixture.js";

const MiB = 1024 * 1024;
const RDM_SIZE = 160 * MiB;
const FILLED = 128 * MiB;

interface Stopped {
  exitCode: number | undefined;
  /** From the (first) signal to the exit. */
  ms: number;
  stderr: string;
}

/** Runs `sanbox args…`, and once a progress line of `phase` shows the copy under way, sends `signals` (each after the previous one was received). */
async function interruptDuring(args: readonly string[], phase: string, signals: NodeJS.Signals[]): Promise<Stopped> {
  const child = spawnBackup(args, { SANBOX_LOG: "warn" });
  let stderr = "";
  let sentAt = 0;
  await new Promise<void>((res, rej) => {
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
      if (sentAt !== 0) return;
      for (const line of stderr.split("\n")) {
        if (!line.startsWith("{")) continue;
        const p = JSON.parse(line) as { phase?: string; done?: number; total?: number };
        if (p.phase === phase && (p.done ?? 0) < (p.total ?? 0)) {
          sentAt = Date.now();
          res();
          return;
        }
      }
    });
    void child.then(() => rej(new Error(`sanbox ${args.join(" ")} exited before its ${phase} copy started: ${stderr}`)));
  });
  for (const [i, sig] of signals.entries()) {
    // Two signals sent before the first is handled would merge into one: wait for the first's announcement.
    const prev = signals[i - 1];
    while (prev !== undefined && !stderr.includes(`${prev} received`)) await new Promise((r) => setTimeout(r, 5));
    child.kill(sig);
  }
  const r = await child;
  return { exitCode: r.exitCode, ms: Date.now() - sentAt, stderr };
}

describe("SIGINT/SIGTERM during backup run, restore and backup export", () => {
  let fx: VmFixture;
  let repoDir: string;
  const backupArgs = (...extra: string[]): string[] => ["backup", "run", "vm1", "--repo", repoDir, "--array", fx.d.rpcEndpoint, "--hypervisor", fx.hv.endpoint, "--json", ...extra];

  const backupSnapshots = async (): Promise<Set<string>> =>
    new Set((await fx.rpc.listSnapshots({})).snapshots.filter((s) => /^sanbox-backup-[0-9a-f]{8}-vm1-/.test(s.name)).map((s) => s.name.replace(/@.*$/, "")));
  const latestBase = async (): Promise<string> => {
    const list = JSON.parse((await sanboxBackup(["backup", "list", "--repo", repoDir, "--json"])).stdout) as unknown[];
    return String(obj(obj(list.at(-1))["base"])["name"]);
  };
  /** Nothing of a stopped run is left: only the latest point's base, no snapshot export, no lock, nothing in tmp/. */
  const expectNothingLeft = async (what: string): Promise<void> => {
    expect(await backupSnapshots(), `${what}: snapshots left`).toEqual(new Set([await latestBase()]));
    expect((await fx.rpc.listExports({})).exports.filter((e) => e.snapshotId !== ""), `${what}: exports left`).toEqual([]);
    expect(readdirSync(join(repoDir, "locks")), `${what}: locks left`).toEqual([]);
    expect(readdirSync(join(repoDir, "tmp")), `${what}: tmp/ entries left`).toEqual([]);
  };
  const backup = async (...extra: string[]): Promise<Record<string, unknown>> => {
    const r = await sanboxBackup(backupArgs(...extra));
    expect(r.exitCode, r.stderr).toBe(0);
    return { ...obj(JSON.parse(r.stdout)), stderr: r.stderr };
  };

  beforeAll(async () => {
    fx = await startVmFixture("sanbox-e2e-660-", { seed: 660, rate: 50, warmUp: 20, rdmBytes: RDM_SIZE });
    repoDir = join(fx.dir, "repo");
    // Random data (stored raw, read in full by a full backup) past the workload's first blocks.
    const lun = await fx.rpc.getLun({ name: "rdm" });
    const exp = await fx.rpc.createExport({ lunId: lun.lunId });
    const c = await NbdClient.connect(exp.uri);
    for (let at = RDM_SIZE - FILLED; at < RDM_SIZE; at += 4 * MiB) await c.write(at, randomBytes(4 * MiB));
    await c.flush();
    await c.close();
    await fx.rpc.deleteExport({ exportId: exp.exportId });
    expect((await backup())["kind"]).toBe("full");
  });
  afterAll(async () => fx?.stop());

  it("SIGINT and SIGTERM in the middle of a --full run's copy: 130 / 143 within 3 s, nothing left, and the next run is still an incremental", async () => {
    for (const [sig, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
      const s = await interruptDuring([...backupArgs("--full", "--parallel", "1", "--progress", "json")], "rdm", [sig]);
      expect(s.exitCode, s.stderr).toBe(code);
      expect(s.ms, `${sig}: took ${s.ms} ms to stop`).toBeLessThan(3000);
      expect(s.stderr).toContain(`${sig} received`);
      expect(s.stderr).toMatch(/cleaned up: .*snapshot sanbox-backup-.*unfinished point tmp\/vm1-.*lock vm-vm1/);
      expect(s.stderr).toContain(`sanbox: CANCELLED: interrupted by ${sig}`);
      await expectNothingLeft(`after ${sig}`);
    }
    // The interrupted --full runs left the base: the next run reads what CBT says changed, not 128 MiB.
    const next = await backup();
    expect(next["kind"]).toBe("incremental");
    // (CBT still reports the blocks the workload dirtied meanwhile; a full read would be the 128 MiB of random data and more.)
    const rdm = (next["disks"] as unknown[]).map(obj).find((d) => d["name"] === "vm1_1");
    expect(Number(rdm?.["bytesRead"]), JSON.stringify(next)).toBeLessThan(FILLED);
    expect(String(next["stderr"])).not.toMatch(/in full/);
    await expectNothingLeft("after the next run");
  });

  it("a second signal exits at once; the next run cleans up what it left", async () => {
    const s = await interruptDuring([...backupArgs("--full", "--parallel", "1", "--progress", "json")], "rdm", ["SIGINT", "SIGINT"]);
    expect(s.exitCode, s.stderr).toBe(130);
    expect(s.ms).toBeLessThan(3000);
    expect(s.stderr).toContain("SIGINT again: exiting now");
    const next = await backup();
    expect(next["kind"]).toBe("incremental");
    await expectNothingLeft("after the run following a double SIGINT");
  });

  it("a run halted at a failpoint stops at the first SIGINT/SIGTERM too: 130 / 143, nothing left, the VM resumed", async () => {
    for (const [stop, sig, code] of [["after-s1", "SIGINT", 130], ["in-quiesce", "SIGTERM", 143]] as const) {
      const child = spawnBackup(backupArgs(), { SANBOX_LOG: "warn", SANBOX_FAILPOINTS: stop });
      let stderr = "";
      await new Promise<void>((res, rej) => {
        child.stderr.on("data", (b: Buffer) => {
          stderr += b.toString();
          if (stderr.includes(`failpoint ${stop}`)) res();
        });
        void child.then(() => rej(new Error(`backup exited before failpoint ${stop}: ${stderr}`)));
      });
      const sentAt = Date.now();
      child.kill(sig);
      const r = await child;
      expect(r.exitCode, `${stop}: ${stderr}`).toBe(code);
      expect(Date.now() - sentAt, `${stop}: took too long`).toBeLessThan(3000);
      expect(stderr).not.toContain("again: exiting now");
      expect(stderr).toMatch(/cleaned up: .*snapshot sanbox-backup-/);
      await expectNothingLeft(`after ${sig} at ${stop}`);
      // Quiesced VMs acknowledge nothing: the workload moving on means the stop resumed it.
      const seq = (await fx.hvc.getWorkloadStatus({ vm: "vm1" })).acknowledgedSeq;
      const deadline = Date.now() + 5000;
      while ((await fx.hvc.getWorkloadStatus({ vm: "vm1" })).acknowledgedSeq === seq && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      expect((await fx.hvc.getWorkloadStatus({ vm: "vm1" })).acknowledgedSeq, `${stop}: the VM stays quiesced`).toBeGreaterThan(seq);
    }
  });

  it("restore: SIGTERM in the middle of writing to a slowed NBD target exits 143 within 3 s; the next restore works", async () => {
    const lun = await fx.rpc.createLun({ name: "restore-target", sizeBytes: RDM_SIZE });
    const exp = await fx.rpc.createExport({ lunId: lun.lunId });
    const proxy = await startSanbox(["fault-proxy", exp.uri, "--delay-write", "1000"]);
    try {
      const args = ["restore", "vm1@latest", "--disk", "vm1_1", "--to", proxy.firstLine, "--repo", repoDir, "--force", "--progress", "json"];
      const s = await interruptDuring(args, "restore", ["SIGTERM"]);
      expect(s.exitCode, s.stderr).toBe(143);
      expect(s.ms, `took ${s.ms} ms to stop`).toBeLessThan(3000);
      expect(s.stderr).toContain("sanbox: CANCELLED: interrupted by SIGTERM");
      const again = await sanboxBackup(["restore", "vm1@latest", "--disk", "vm1_1", "--to", exp.uri, "--repo", repoDir, "--force"]);
      expect(again.exitCode, again.stderr).toBe(0);
    } finally {
      proxy.kill("SIGTERM");
      await proxy.exited;
      await fx.rpc.deleteExport({ exportId: exp.exportId });
    }
  });

  it("restore into a new LUN: SIGINT mid-copy exits 130 and deletes the LUN it made; a LUN given with --force stays", async () => {
    const lunNames = async (): Promise<string[]> => (await fx.rpc.listLuns({})).luns.map((l) => l.name);
    const args = (to: string, ...extra: string[]): string[] => ["restore", "vm1@latest", "--disk", "vm1_1", "--to", to, "--repo", repoDir, "--array", fx.d.rpcEndpoint, "--progress", "json", ...extra];
    const lunExports = async (): Promise<string[]> => (await fx.rpc.listExports({})).exports.filter((e) => e.snapshotId === "").map((e) => e.exportId);
    const exportsBefore = await lunExports();
    const s = await interruptDuring(args("lun:restored-new"), "restore", ["SIGINT"]);
    expect(s.exitCode, s.stderr).toBe(130);
    expect(s.ms, `took ${s.ms} ms to stop`).toBeLessThan(3000);
    expect(s.stderr).toMatch(/cleaned up: export \S+, LUN restored-new \(lun-?\S*, created by this restore\)/);
    expect(await lunNames()).not.toContain("restored-new");
    expect(await lunExports(), "LUN exports left").toEqual(exportsBefore);

    // A LUN that was there before is the user's: an interrupted --force restore leaves it, and says so.
    await fx.rpc.createLun({ name: "restored-existing", sizeBytes: RDM_SIZE });
    const t = await interruptDuring(args("lun:restored-existing", "--force"), "restore", ["SIGTERM"]);
    expect(t.exitCode, t.stderr).toBe(143);
    expect(t.stderr).toContain("LUN restored-existing is partly written (it existed; --force)");
    expect(t.stderr).not.toMatch(/LUN restored-existing \(/);
    expect(await lunNames()).toContain("restored-existing");
    await fx.rpc.deleteLun({ lunId: (await fx.rpc.getLun({ name: "restored-existing" })).lunId });
  });

  it("backup export: SIGINT while qemu-img converts exits 130, removes the partial file and releases the point", async () => {
    const out = join(fx.dir, "export");
    const s = await interruptDuring(["backup", "export", "vm1@latest", "--format", "qcow2", "--out", out, "--repo", repoDir, "--progress", "json"], "export", ["SIGINT"]);
    expect(s.exitCode, s.stderr).toBe(130);
    expect(s.ms).toBeLessThan(3000);
    expect(s.stderr).toMatch(/export stopped: removed the partial /);
    expect(existsSync(out) ? readdirSync(out).filter((f) => f.endsWith(".qcow2.partial") || f === "vm1_1.qcow2") : []).toEqual([]);
    expect(readdirSync(join(repoDir, "locks"))).toEqual([]);
  });
});
