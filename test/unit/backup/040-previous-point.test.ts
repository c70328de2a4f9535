/**
 * The one previous-point lookup every phase of a backup run uses: which point
 * a run builds on (none with --full, which still keeps the latest base, none over an unreverted point), and which
 * disk of it is "the same disk" (name and kind, plus the same flat file with
 * its S1 map for a VMDK, the same NAA id for an RDM).
 */
import { describe, expect, it } from "vitest";
import type { BackupPoint, PointDisk } from "../../../plugin/backup/repository/catalog.js";
import { findPreviousPoint, previousDisk, previousSnapshot } from "../../../plugin/backup/run/previous-point.js";
import { recordingLogger } from "../../support/backup-fakes.js";

const stats = { bytesRead: 0, bytesWritten: 0, bytesReverted: 0 };
const vmdk: PointDisk = { name: "vm1", slot: "scsi0:0", kind: "vmdk", size: 8192, flatPath: "/vm1/vm1-flat.vmdk", s1Map: [{ fileOffset: 0, lunOffset: 4096, length: 8192 }], stats };
const rdm: PointDisk = { name: "vm1_1", slot: "scsi0:1", kind: "rdm", size: 65536, naa: "naa.600b", lunId: "lun-rdm", lunName: "rdm1", stats };

function point(id: string, reverted: boolean, disks: PointDisk[] = [vmdk, rdm]): BackupPoint {
  return {
    version: 2,
    id,
    vm: "vm1",
    createdAt: "2026-01-01T00:00:00.000Z",
    kind: "full",
    t1: "2026-01-01T00:00:00.000Z",
    t2: "2026-01-01T00:00:01.000Z",
    quiesceWindowMs: 1,
    reverted,
    datastoreLunId: "lun-ds",
    vmDir: "/vm1",
    base: {
      groupSnapshotId: "group-1",
      name: "sanbox-backup-r-vm1-x-s1-0",
      snapshots: [
        { snapshotId: "snap-ds", lunId: "lun-ds", lunName: "datastore" },
        { snapshotId: "snap-rdm", lunId: "lun-rdm", lunName: "rdm1" },
      ],
    },
    durationsMs: {},
    disks,
  };
}

/** A repository that has only a latest point, and counts how often it was asked. */
function repoWith(latest: BackupPoint | undefined): { latest: (vm: string) => Promise<BackupPoint | undefined>; asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    latest: async (vm) => {
      asked.push(vm);
      return latest;
    },
  };
}

describe("the previous point", () => {
  it("is the latest point, and the parent to build on when it was reverted", async () => {
    const latest = point("vm1-a", true);
    const found = await findPreviousPoint(repoWith(latest), "vm1", false, recordingLogger());
    expect(found.latest).toBe(latest);
    expect(found.parent).toBe(latest);
  });

  it("is no parent when it was taken without the revert, and the run says it goes full", async () => {
    const latest = point("vm1-a", false);
    const log = recordingLogger();
    const found = await findPreviousPoint(repoWith(latest), "vm1", false, log);
    expect(found.latest).toBe(latest);
    expect(found.parent).toBeUndefined();
    expect(log.lines).toEqual([expect.stringMatching(/^warn the latest point vm1-a was taken without the revert/)]);
  });

  it("is no parent with --full, but stays the latest: its base is kept until the full point commits", async () => {
    const latest = point("vm1-a", true);
    const found = await findPreviousPoint(repoWith(latest), "vm1", true, recordingLogger());
    expect(found).toEqual({ latest, parent: undefined });
  });
});

describe("the same disk in the previous point", () => {
  const parent = point("vm1-a", true);

  it("a VMDK: the same name, kind and flat file, with its S1 map", () => {
    expect(previousDisk(parent, { name: "vm1", kind: "vmdk", flatPath: "/vm1/vm1-flat.vmdk" })).toBe(vmdk);
    expect(previousDisk(parent, { name: "vm1", kind: "vmdk", flatPath: "/vm1/other-flat.vmdk" })).toBeUndefined();
    expect(previousDisk(parent, { name: "vm2", kind: "vmdk", flatPath: "/vm1/vm1-flat.vmdk" })).toBeUndefined();
    const { s1Map: _dropped, ...withoutMap } = vmdk;
    const noMap = point("vm1-b", true, [withoutMap]);
    expect(previousDisk(noMap, { name: "vm1", kind: "vmdk", flatPath: "/vm1/vm1-flat.vmdk" })).toBeUndefined();
  });

  it("an RDM: the same name and kind and the same LUN by NAA id", () => {
    expect(previousDisk(parent, { name: "vm1_1", kind: "rdm", naa: "naa.600b" })).toBe(rdm);
    expect(previousDisk(parent, { name: "vm1_1", kind: "rdm", naa: "naa.600c" })).toBeUndefined();
  });

  it("a disk whose kind changed under the same name is a new disk", () => {
    expect(previousDisk(parent, { name: "vm1", kind: "rdm", naa: "naa.600b" })).toBeUndefined();
    expect(previousDisk(parent, { name: "vm1_1", kind: "vmdk", flatPath: "/vm1/vm1_1-flat.vmdk" })).toBeUndefined();
  });

  it("no parent: no previous disk and no previous snapshot", () => {
    expect(previousDisk(undefined, { name: "vm1", kind: "vmdk", flatPath: "/vm1/vm1-flat.vmdk" })).toBeUndefined();
    expect(previousSnapshot(undefined, "lun-ds")).toBeUndefined();
  });

  it("the previous snapshot of a LUN is the parent's S1 member of that LUN", () => {
    expect(previousSnapshot(parent, "lun-rdm")?.snapshotId).toBe("snap-rdm");
    expect(previousSnapshot(parent, "lun-ds")?.snapshotId).toBe("snap-ds");
    expect(previousSnapshot(parent, "lun-other")).toBeUndefined();
  });
});
