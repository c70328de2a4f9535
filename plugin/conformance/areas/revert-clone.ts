/**
 * Revert and clone: RevertLun gives the LUN its snapshot's content and size
 * and keeps later snapshots; CloneSnapshot makes an independent writable LUN
 * with the snapshot's content, idempotent on name.
 */
import { expectCode, firstDifference, must } from "../assert.js";
import { pattern } from "../data.js";
import { describeArea } from "../registry.js";

describeArea("revert-clone", (area) => {
  area.it(
    "revert.content",
    "RevertLun restores the snapshot's content and size, keeps later snapshots; a snapshot of another LUN is INVALID_ARGUMENT, an unknown one NOT_FOUND",
    async (t) => {
      const bs = t.blockSize;
      const lun = await t.createLun("rev", bs * 8);
      const c = await t.open({ lunId: lun.lunId });
      const a = pattern(`${lun.name}/a`, bs * 8);
      await c.write(0, a);
      await c.flush();
      const s = await t.snapshotOne(lun.lunId, "rev-a");
      await c.write(0, pattern(`${lun.name}/b`, bs * 8));
      await c.flush();
      await c.close();
      const later = await t.snapshotOne(lun.lunId, "rev-later");
      if (t.claims("resize")) await t.array.resizeLun({ lunId: lun.lunId, sizeBytes: bs * 12 });
      const r = await t.array.revertLun({ lunId: lun.lunId, snapshotId: s.snapshotId });
      must(r.sizeBytes === bs * 8, `after revert the LUN has size ${r.sizeBytes}, the snapshot ${bs * 8}`);
      const c2 = await t.open({ lunId: lun.lunId });
      const at = firstDifference(await c2.read(0, c2.size), a);
      must(at < 0, `after revert the LUN differs from the snapshot at byte ${at}`);
      must((await t.array.getSnapshot({ snapshotId: later.snapshotId })).snapshotId === later.snapshotId, "a later snapshot was dropped by the revert");
      const other = await t.createLun("rev-other", bs * 8);
      const os = await t.snapshotOne(other.lunId);
      await expectCode(() => t.array.revertLun({ lunId: lun.lunId, snapshotId: os.snapshotId }), "INVALID_ARGUMENT", "RevertLun(snapshot of another LUN)");
      await expectCode(() => t.array.revertLun({ lunId: lun.lunId, snapshotId: t.name("no-such-snap") }), "NOT_FOUND", "RevertLun(unknown snapshot)");
      await expectCode(() => t.array.revertLun({ lunId: t.name("no-such-lun"), snapshotId: s.snapshotId }), "NOT_FOUND", "RevertLun(unknown LUN)");
    },
    { requires: ["revert"] },
  );

  area.it(
    "clone.content",
    "CloneSnapshot makes a writable LUN with the snapshot's content and source_snapshot_id, idempotent on name; writes to the clone change neither the snapshot nor the source LUN",
    async (t) => {
      const bs = t.blockSize;
      const lun = await t.createLun("cl", bs * 8);
      const c = await t.open({ lunId: lun.lunId });
      const a = pattern(`${lun.name}/a`, bs * 8);
      await c.write(0, a);
      await c.flush();
      const s = await t.snapshotOne(lun.lunId, "cl-a");
      const name = t.name("clone");
      const clone = await t.array.cloneSnapshot({ snapshotId: s.snapshotId, name });
      t.track.lun(clone.lunId);
      must(clone.sourceSnapshotId === s.snapshotId, `source_snapshot_id "${clone.sourceSnapshotId}", expected ${s.snapshotId}`);
      must(clone.sizeBytes === s.sizeBytes, `clone size ${clone.sizeBytes}, snapshot size ${s.sizeBytes}`);
      for (let i = 0; i < t.idempotentCount; i++) {
        const again = await t.array.cloneSnapshot({ snapshotId: s.snapshotId, name });
        must(again.lunId === clone.lunId, `repeat ${i + 1} returned LUN ${again.lunId}, expected ${clone.lunId}`);
      }
      const cc = await t.open({ lunId: clone.lunId });
      must(firstDifference(await cc.read(0, cc.size), a) < 0, "the clone does not hold the snapshot's content");
      await cc.write(0, pattern("clone-write", bs));
      await cc.flush();
      const sc = await t.open({ snapshotId: s.snapshotId });
      must(firstDifference(await sc.read(0, sc.size), a) < 0, "a write to the clone changed the snapshot");
      must(firstDifference(await c.read(0, c.size), a) < 0, "a write to the clone changed the source LUN");
      await expectCode(() => t.array.cloneSnapshot({ snapshotId: t.name("no-such-snap"), name: t.name("clone") }), "NOT_FOUND", "CloneSnapshot(unknown snapshot)");
    },
    { requires: ["clone"] },
  );
});
