/**
 * The phases of a backup run that can be tested without a daemon, over a fake
 * array and hypervisor (test/support/backup-fakes.ts) and a real repository
 * in a temp directory: the phase runner and where the test-only stops fall,
 * the layout phase (inventory, LUNs by NAA id, leak cleanup that spares the
 * latest base), the T2 window (always resumed), the commit's hand-over of S1,
 * and cleanup after a failure in a given phase. The phases that read over NBD
 * (T1's layout from S1, the copies) are covered by the e2e tests 600-640.
 */
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FailedPreconditionError, NotFoundError } from "../../../src/errors.js";
import type { StopName } from "../../../src/failpoints.js";
import type { LunInfo, SnapshotSet } from "../../../plugin/backup/array-driver.js";
import { runBackup } from "../../../plugin/backup/backup-run.js";
import type { BackupPoint } from "../../../plugin/backup/repository/catalog.js";
import { Repository } from "../../../plugin/backup/repository/repository.js";
import { cleanup, commitPoint } from "../../../plugin/backup/run/end-of-run.js";
import { discover } from "../../../plugin/backup/run/layout.js";
import { createRunState, openSnapshotExport, runPhase, type PhaseName, type RunState } from "../../../plugin/backup/run/run-state.js";
import { cutT2, type AtT1 } from "../../../plugin/backup/run/snapshot-cuts.js";
import { snapshotPrefix } from "../../../plugin/backup/run/snapshots.js";
import { FakeArray, FakeHypervisor, recordingLogger } from "../../support/backup-fakes.js";
import { tempDir } from "../../support/tools.js";

const DS: LunInfo = { id: "lun-ds", name: "datastore", naa: "naa.600a", size: 1 << 20 };
const RDM: LunInfo = { id: "lun-rdm", name: "rdm1", naa: "naa.600b", size: 1 << 16 };

function record(id: string, base: SnapshotSet): BackupPoint {
  return {
    version: 2,
    id,
    vm: "vm1",
    createdAt: new Date().toISOString(),
    kind: "full",
    t1: "2026-01-01T00:00:00.000Z",
    t2: "2026-01-01T00:00:01.000Z",
    quiesceWindowMs: 1,
    reverted: true,
    datastoreLunId: DS.id,
    vmDir: "/vm1",
    base: { groupSnapshotId: base.groupId, name: base.name, snapshots: base.members.map((m) => ({ snapshotId: m.id, lunId: m.lunId, lunName: m.lunName })) },
    durationsMs: {},
    disks: [],
  };
}

describe("backup run phases", () => {
  let tmp: { dir: string; cleanup: () => void };
  let repo: Repository;
  let array: FakeArray;
  let hv: FakeHypervisor;
  let log: ReturnType<typeof recordingLogger>;
  let stops: string[];
  let prefix: string;

  const newRun = (extra: { full?: boolean } = {}): RunState =>
    createRunState({ vm: "vm1", repo, array, hypervisor: hv, log, ...extra }, async (name: StopName) => {
      stops.push(`${name}${hv.quiesced ? " (quiesced)" : ""}`);
    });

  /** Commits a point of vm1 whose base is `base`, as an earlier run would have. */
  const commitEarlier = async (base: SnapshotSet): Promise<BackupPoint> => {
    const id = repo.newPointId("vm1", new Date(Date.now() - 60_000));
    const pending = await repo.begin(id);
    const point = record(id, base);
    await pending.commit(point);
    return point;
  };

  beforeEach(async () => {
    tmp = tempDir("sanbox-run-phases-");
    repo = await Repository.open(tmp.dir, { create: true, chunkSize: 65536 });
    array = new FakeArray([DS, RDM]);
    hv = new FakeHypervisor("vm1", DS.id, [
      { slot: "scsi0:0", name: "vm1", flatPath: "/vm1/vm1-flat.vmdk" },
      { slot: "scsi0:1", name: "vm1_1", naa: "NAA.600B" },
    ]);
    log = recordingLogger();
    stops = [];
    prefix = snapshotPrefix(repo.id, "vm1");
  });
  afterEach(() => tmp.cleanup());

  describe("the phase runner", () => {
    it("times each phase under its name and halts only after t1, t2 and finish", async () => {
      const run = newRun();
      const names: PhaseName[] = ["discover", "t1", "rdm", "t2", "vmdk", "revert", "finish", "commit", "cleanup"];
      for (const name of names) {
        const out = await runPhase(run, name, async () => {
          stops.push(`ran ${name}`);
          return name.length;
        });
        expect(out).toBe(name.length);
      }
      expect(stops).toEqual(["ran discover", "ran t1", "after-s1", "ran rdm", "ran t2", "after-s2", "ran vmdk", "ran revert", "ran finish", "before-commit", "ran commit", "ran cleanup"]);
      expect(Object.keys(run.durations)).toEqual(names);
    });

    it("a phase that fails is neither timed nor followed by its stop", async () => {
      const run = newRun();
      await expect(runPhase(run, "t1", () => Promise.reject(new Error("injected")))).rejects.toThrow("injected");
      expect(stops).toEqual([]);
      expect(run.durations).toEqual({});
    });
  });

  describe("the layout phase", () => {
    it("reads the disks from the inventory and finds each RDM's LUN by its NAA id", async () => {
      const found = await discover(newRun());
      expect(found.dsLun).toBe(DS);
      expect(found.expected.layout).toEqual({
        vm: "vm1",
        dir: "/vm1",
        disks: [
          { name: "vm1", slot: "scsi0:0", kind: "vmdk", flatPath: "/vm1/vm1-flat.vmdk" },
          { name: "vm1_1", slot: "scsi0:1", kind: "rdm", naa: "naa.600b" },
        ],
      });
      expect([...found.expected.rdmLuns]).toEqual([["vm1_1", RDM]]);
      expect(found.previous).toEqual({ latest: undefined, parent: undefined });
      expect(array.calls.filter((c) => /^(create|delete|export)/.test(c))).toEqual([]);
    });

    it("deletes snapshots a killed run left, but not the latest base nor anyone else's", async () => {
      const base = await array.addSnapshot(`${prefix}old-s1-0`, [DS.id, RDM.id]);
      const latest = await commitEarlier(base);
      await array.addSnapshot(`${prefix}dead-s1-0`, [DS.id, RDM.id]);
      await array.addSnapshot(`${prefix}dead-s2`, [DS.id]);
      await array.addSnapshot("sanbox-backup-0000beef-vm1-other-s2", [DS.id]);
      await array.addSnapshot("a-user-snapshot", [RDM.id]);
      const found = await discover(newRun());
      expect(found.previous.latest?.id).toBe(latest.id);
      expect(found.previous.parent?.id).toBe(latest.id);
      expect(found.deleted.sort()).toEqual([`${prefix}dead-s1-0`, `${prefix}dead-s2`]);
      expect(new Set(array.snapshots.map((s) => s.name.replace(/@.*$/, "")))).toEqual(new Set([base.name, "sanbox-backup-0000beef-vm1-other-s2", "a-user-snapshot"]));
    });

    it("with --full the latest base is kept all the same (it is deleted only after the full point commits)", async () => {
      const base = await array.addSnapshot(`${prefix}old-s1-0`, [DS.id, RDM.id]);
      const latest = await commitEarlier(base);
      await array.addSnapshot(`${prefix}dead-s2`, [DS.id]);
      const found = await discover(newRun({ full: true }));
      expect(found.previous.latest?.id).toBe(latest.id);
      expect(found.previous.parent).toBeUndefined();
      expect(found.deleted).toEqual([`${prefix}dead-s2`]);
      expect(new Set(array.snapshots.map((s) => s.name.replace(/@.*$/, "")))).toEqual(new Set([base.name]));
    });

    it("resumes a VM an earlier run left quiesced, and removes that run's unfinished point", async () => {
      hv.quiesced = true;
      await repo.begin("vm1-unfinished");
      // As a killed run leaves it: its owner's pid is gone (no pid is this high).
      writeFileSync(join(repo.dir, "tmp", "vm1-unfinished.owner"), "2147483646");
      await discover(newRun());
      expect(hv.quiesced).toBe(false);
      expect(log.lines).toContain("warn VM vm1 is still quiesced by an earlier run that died; resuming it");
      expect(readdirSync(join(repo.dir, "tmp"))).toEqual([]);
    });
  });

  describe("the T2 window", () => {
    it("cuts S2 of the datastore alone while quiesced, and resumes", async () => {
      const run = newRun();
      const atT2 = await cutT2(run, DS);
      expect(hv.calls).toEqual(["quiesceVm", "resumeVm"]);
      expect(stops).toEqual(["in-quiesce (quiesced)"]);
      expect(atT2.s2.name).toBe(`${prefix}${run.runId}-s2`);
      expect(atT2.s2.members.map((m) => m.lunId)).toEqual([DS.id]);
      expect(run.held.snapshots).toEqual([atT2.s2]);
      expect(run.held.quiesced).toBe(false);
      expect(hv.quiesced).toBe(false);
    });

    it("resumes the VM when S2 cannot be cut", async () => {
      const run = newRun();
      array.failOn.set("createSnapshot", new FailedPreconditionError("injected: no S2"));
      await expect(cutT2(run, DS)).rejects.toThrow("injected: no S2");
      expect(hv.calls).toEqual(["quiesceVm", "resumeVm"]);
      expect(hv.quiesced).toBe(false);
      expect(run.held).toMatchObject({ snapshots: [], quiesced: false });
    });

    it("a resume that fails leaves the VM marked quiesced, and cleanup resumes it and deletes S2", async () => {
      const run = newRun();
      hv.failResume.push(new FailedPreconditionError("injected: resume refused"));
      await expect(cutT2(run, DS)).rejects.toThrow("injected: resume refused");
      expect(run.held.quiesced).toBe(true);
      expect(hv.quiesced).toBe(true);
      await cleanup(run);
      expect(hv.quiesced).toBe(false);
      expect(run.held.quiesced).toBe(false);
      expect(array.snapshots).toEqual([]);
    });
  });

  describe("cleanup", () => {
    it("after a failure past T2: closes readers, deletes exports before snapshots (newest first), drops the point", async () => {
      const run = newRun();
      const s1 = await array.createSnapshot(`${prefix}${run.runId}-s1-0`, [DS.id, RDM.id]);
      run.held.snapshots.push(s1);
      const s2 = await array.createSnapshot(`${prefix}${run.runId}-s2`, [DS.id]);
      run.held.snapshots.push(s2);
      for (const m of [...s1.members, ...s2.members]) await openSnapshotExport(run, m.id);
      let closed = 0;
      run.held.readers.push({ close: async () => void closed++ }, { close: () => Promise.reject(new Error("already closed")) });
      run.held.pending = await repo.begin(repo.newPointId("vm1"));
      array.calls.length = 0;

      expect(await cleanup(run)).toEqual([]);
      expect(closed).toBe(1);
      expect(array.calls.map((c) => c.split(" ")[0])).toEqual(["deleteExport", "deleteExport", "deleteExport", "deleteSnapshot", "deleteSnapshot"]);
      expect(array.calls.slice(3)).toEqual([`deleteSnapshot ${s2.members.map((m) => m.id).join(",")}`, `deleteSnapshot ${s1.members.map((m) => m.id).join(",")}`]);
      expect(array.snapshots).toEqual([]);
      expect(array.exports.size).toBe(0);
      expect(readdirSync(join(repo.dir, "tmp"))).toEqual([]);
      expect(run.held).toEqual({ snapshots: [], exports: [], readers: [], pending: undefined, quiesced: false });
    });

    it("never throws: an export the array cannot delete is reported and the snapshots still go", async () => {
      const run = newRun();
      const s2 = await array.createSnapshot(`${prefix}${run.runId}-s2`, [DS.id]);
      run.held.snapshots.push(s2);
      await openSnapshotExport(run, s2.members[0]?.id ?? "");
      array.failOn.set("deleteExport", new FailedPreconditionError("injected: export busy"));
      await cleanup(run);
      expect(log.lines.some((l) => l.startsWith("warn delete export") && l.includes("injected: export busy"))).toBe(true);
      expect(array.snapshots).toEqual([]);
    });

    it("after a commit: S1 stays as the point's base, S2 and the previous base go", async () => {
      const oldBase = await array.addSnapshot(`${prefix}old-s1-0`, [DS.id, RDM.id]);
      const latest = await commitEarlier(oldBase);
      const run = newRun();
      const s1 = await array.createSnapshot(`${prefix}${run.runId}-s1-0`, [DS.id, RDM.id]);
      run.held.snapshots.push(s1);
      const s2 = await array.createSnapshot(`${prefix}${run.runId}-s2`, [DS.id]);
      run.held.snapshots.push(s2);
      const point = await repo.begin(repo.newPointId("vm1"));
      run.held.pending = point;
      const atT1: AtT1 = { s1, t1: "", layout: { vm: "vm1", dir: "/vm1", disks: [] }, rdmLuns: new Map(), s1DatastoreUri: "", point, vmdks: [] };

      await commitPoint(run, atT1, record(point.id, s1));
      expect(run.held.snapshots).toEqual([s2]);
      expect(run.held.pending).toBeUndefined();
      expect(await cleanup(run, { latest, s1 })).toEqual([oldBase.name]);
      expect(array.snapshots).toEqual(s1.members);
      expect((await repo.list("vm1")).map((p) => p.id)).toEqual([latest.id, point.id]);
    });
  });

  describe("runBackup over the fakes", () => {
    it("a failure at discovery touches nothing on the array and releases the VM's lock", async () => {
      hv.failOn.set("getVm", new NotFoundError("injected: no such VM"));
      await expect(runBackup({ vm: "vm1", repo, array, hypervisor: hv, log })).rejects.toThrow("injected: no such VM");
      expect(array.calls).toEqual([]);
      await (await repo.lock("vm-vm1")).release();
    });

    it("a failure right after S1 is cut: S1 is deleted, nothing is committed, the lock is released", async () => {
      array.failOn.set("exportSnapshot", new FailedPreconditionError("injected: no export"));
      await expect(runBackup({ vm: "vm1", repo, array, hypervisor: hv, log })).rejects.toThrow("injected: no export");
      const made = array.calls.filter((c) => c.startsWith("createSnapshot"));
      expect(made).toHaveLength(1);
      expect(made[0]).toMatch(new RegExp(`^createSnapshot ${prefix}[0-9a-z]+-s1-0$`));
      expect(array.calls.at(-1)).toMatch(/^deleteSnapshot snap-\d+,snap-\d+$/);
      expect(array.snapshots).toEqual([]);
      expect(hv.calls).not.toContain("quiesceVm");
      expect(await repo.list()).toEqual([]);
      expect(readdirSync(join(repo.dir, "tmp"))).toEqual([]);
      expect(log.lines.some((l) => l.startsWith("error backup of vm1 failed: injected: no export"))).toBe(true);
      await (await repo.lock("vm-vm1")).release();
    });
  });
});
