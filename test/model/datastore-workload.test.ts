// The dependent-write workload running on a VM whose VMDKs live on the datastore file
// system and whose RDM is a raw device. Group "snapshots" are cut at every point of the
// combined device-write log (mid-operation included): each must parse, and its VMDK
// images (read back through the datastore) plus the RDM image must be a prefix of the
// chain. A datastore cut later than the RDM cut (no revert) must fail.
import { describe, expect, it } from "vitest";
import type { BlockDevice } from "../../src/block-device.js";
import { MemoryBackend } from "../../src/nbd/backends/memory-backend.js";
import { Datastore } from "../../src/datastore/datastore.js";
import { DatastoreFileDevice } from "../../src/datastore/file-device.js";
import { createVm, growVmdk, listVms, readVm } from "../../src/datastore/vm-files.js";
import { applyOp, type DiskTarget } from "../../src/oracle/apply-op.js";
import { verifyConsistency, type NamedImage } from "../../src/oracle/verify.js";
import { Journal, Workload } from "../../src/oracle/workload.js";
import { RecordingDevice } from "../support/recording-device.js";

const KiB = 1024;
const NAA = "naa.65a4e42" + "abcdef0123456789abcdef012";

async function imagesAt(ds: BlockDevice, rdm: BlockDevice): Promise<NamedImage[]> {
  const fs = await Datastore.open(ds, { readOnly: true });
  const [dir] = await listVms(fs);
  const vm = await readVm(fs, dir ?? "/");
  const out: NamedImage[] = [];
  for (const d of vm.disks) {
    if (d.flatPath !== undefined) out.push({ name: d.flatPath, source: await DatastoreFileDevice.open(fs, d.flatPath) });
    else out.push({ name: d.rdm?.naa ?? "rdm", source: rdm });
  }
  return out;
}

describe("dependent-write workload on the datastore", () => {
  it("every group cut is time-consistent; a skewed cut is not", async () => {
    const dsDev = new RecordingDevice(8 * 1024 * KiB);
    const rdmDev = new RecordingDevice(256 * KiB);
    const fs = await Datastore.format(dsDev, { blockSize: 64 * KiB });
    let vm = await createVm(fs, { name: "vm1", disks: [{ kind: "vmdk", capacityBytes: 256 * KiB }, { kind: "vmdk", capacityBytes: 128 * KiB }, { kind: "rdm", naa: NAA, capacityBytes: 256 * KiB }] });
    const spec = {
      seed: 7,
      vm: "vm1",
      disks: [
        { id: "scsi0:0", kind: "vmdk" as const, size: 256 * KiB, maxSize: 1024 * KiB },
        { id: "scsi0:1", kind: "vmdk" as const, size: 128 * KiB },
        { id: NAA, kind: "rdm" as const, size: 256 * KiB },
      ],
    };
    const journal = new Journal(new Workload(spec));
    const targets: DiskTarget[] = [];
    for (const [i, d] of vm.disks.entries()) {
      if (d.flatPath === undefined) {
        targets.push({ device: rdmDev });
        continue;
      }
      const device = await DatastoreFileDevice.open(fs, d.flatPath);
      targets.push({
        device,
        grow: async (size) => {
          const disk = vm.disks[i];
          if (disk === undefined) throw new Error("no disk");
          const grown = await growVmdk(fs, disk, size);
          vm = { ...vm, disks: vm.disks.map((x, k) => (k === i ? grown : x)) };
          await device.refresh();
        },
      });
    }
    // Global order of device writes, and the last acknowledged op at each point.
    const dsStart = dsDev.log.length;
    const rdmStart = rdmDev.log.length;
    const marks: { ds: number; rdm: number; acked: number }[] = [{ ds: dsStart, rdm: rdmStart, acked: 0 }];
    const OPS = 250;
    for (let i = 0; i < OPS; i++) {
      const op = journal.workload.next();
      const before = { ds: dsDev.log.length, rdm: rdmDev.log.length };
      await applyOp(journal.workload, op, targets);
      // Cut points inside the operation: after each of its device writes (it touches one device).
      for (let k = before.ds + 1; k < dsDev.log.length; k++) marks.push({ ds: k, rdm: rdmDev.log.length, acked: op.seq - 1 });
      journal.ack(op);
      marks.push({ ds: dsDev.log.length, rdm: rdmDev.log.length, acked: op.seq });
    }
    expect(marks.length).toBeGreaterThan(OPS + 50); // allocating writes and growth cut mid-operation
    const step = Math.max(1, Math.floor(marks.length / 250));
    let checked = 0;
    for (let m = 0; m < marks.length; m += step) {
      const mark = marks[m];
      if (mark === undefined) continue;
      const r = await verifyConsistency(await imagesAt(dsDev.replay(mark.ds), rdmDev.replay(mark.rdm)), { spec, horizon: OPS });
      expect(r.violations, `cut ${m} (acked ${mark.acked})`).toEqual([]);
      expect(r.prefix).toBeGreaterThanOrEqual(mark.acked);
      checked++;
    }
    expect(checked).toBeGreaterThan(250);

    // Skew: datastore at the end, RDM from op 100 (no revert): inconsistent, offsets named.
    const early = marks.find((x) => x.acked === 100);
    expect(early).toBeDefined();
    const skew = await verifyConsistency(await imagesAt(dsDev.replay(dsDev.log.length), rdmDev.replay(early?.rdm ?? 0)), { spec, horizon: OPS });
    expect(skew.consistent).toBe(false);
    expect(skew.violations.length).toBeGreaterThan(0);
    for (const v of skew.violations) expect(v.offset % 4096).toBe(0);

    // The final state, reopened read-write, still passes fsck and reads the same as the journal.
    const reopened = await Datastore.open(MemoryBackend.fromBuffer(dsDev.inner.contents()));
    expect(reopened.check().errors).toEqual([]);
    const final = await verifyConsistency(await imagesAt(dsDev, rdmDev), { spec });
    expect(final).toMatchObject({ consistent: true });
    expect(final.prefix).toBeGreaterThanOrEqual(OPS);
  });
});
