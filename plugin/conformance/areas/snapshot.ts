/**
 * Snapshot and group-snapshot lifecycle (CSI semantics): creates idempotent on
 * name, conflicts and bad arguments refused with the documented codes, a member
 * of a group snapshot cannot be deleted alone, deletes idempotent; and
 * snapshots are immutable: nothing written to the LUN after the cut (writes,
 * trims, zeroes) ever shows in the snapshot's export.
 */
import { expectCode, firstDifference, must } from "../assert.js";
import { pattern } from "../data.js";
import { describeArea } from "../registry.js";

describeArea("snapshot", (area) => {
  area.it("snapshot.create", "CreateSnapshot of one LUN returns a ready snapshot of that LUN and size; GetSnapshot and ListSnapshots(lun_id) show it", async (t) => {
    const lun = await t.createLun("src", t.blockSize * 4);
    const r = await t.snapshot([lun.lunId]);
    must(r.snapshots.length === 1, `expected 1 snapshot, got ${r.snapshots.length}`);
    must(r.groupSnapshotId === "", `a one-LUN snapshot has group_snapshot_id "${r.groupSnapshotId}"`);
    const s = r.snapshots[0];
    must(s !== undefined && s.snapshotId !== "", "snapshot_id is empty");
    must(s.lunId === lun.lunId, `lun_id ${s.lunId}, expected ${lun.lunId}`);
    must(s.sizeBytes === lun.sizeBytes, `size_bytes ${s.sizeBytes}, expected the LUN's ${lun.sizeBytes}`);
    must(s.readyToUse, "ready_to_use is false");
    const got = await t.array.getSnapshot({ snapshotId: s.snapshotId });
    must(got.name === s.name && got.lunId === lun.lunId, `GetSnapshot returned ${JSON.stringify(got)}`);
    const list = await t.array.listSnapshots({ lunId: lun.lunId });
    must(list.snapshots.some((x) => x.snapshotId === s.snapshotId), "ListSnapshots(lun_id) does not include the new snapshot");
    const byId = await t.array.listSnapshots({ snapshotId: s.snapshotId });
    must(byId.snapshots.length === 1, `ListSnapshots(snapshot_id) returned ${byId.snapshots.length} snapshots`);
  });

  area.it("snapshot.create-idempotent", "CreateSnapshot is idempotent on name: the same name and LUN returns the same snapshot; the same name for another LUN is ALREADY_EXISTS", async (t) => {
    const a = await t.createLun("a", t.blockSize * 2);
    const b = await t.createLun("b", t.blockSize * 2);
    const name = t.name("idem");
    const first = (await t.array.createSnapshot({ name, lunIds: [a.lunId] })).snapshots[0];
    must(first !== undefined, "no snapshot returned");
    for (let i = 0; i < t.idempotentCount; i++) {
      const again = (await t.array.createSnapshot({ name, lunIds: [a.lunId] })).snapshots[0];
      must(again?.snapshotId === first.snapshotId, `repeat ${i + 1} returned ${again?.snapshotId ?? "nothing"}, expected ${first.snapshotId}`);
    }
    await expectCode(() => t.array.createSnapshot({ name, lunIds: [b.lunId] }), "ALREADY_EXISTS", "CreateSnapshot(same name, other LUN)");
  });

  area.it("snapshot.create-invalid", "CreateSnapshot without a name, without LUNs or with a LUN twice is INVALID_ARGUMENT; an unknown LUN is NOT_FOUND", async (t) => {
    const a = await t.createLun("inv", t.blockSize);
    await expectCode(() => t.array.createSnapshot({ name: "", lunIds: [a.lunId] }), "INVALID_ARGUMENT", "CreateSnapshot(no name)");
    await expectCode(() => t.array.createSnapshot({ name: t.name("s"), lunIds: [] }), "INVALID_ARGUMENT", "CreateSnapshot(no LUN)");
    await expectCode(() => t.array.createSnapshot({ name: t.name("s"), lunIds: [a.lunId, a.lunId] }), "INVALID_ARGUMENT", "CreateSnapshot(same LUN twice)");
    await expectCode(() => t.array.createSnapshot({ name: t.name("s"), lunIds: [t.name("no-such-lun")] }), "NOT_FOUND", "CreateSnapshot(unknown LUN)");
  });

  area.it("snapshot.get-unknown", "GetSnapshot of an unknown id is NOT_FOUND; ListSnapshots with unknown filters is empty, not an error", async (t) => {
    await expectCode(() => t.array.getSnapshot({ snapshotId: t.name("no-such-snap") }), "NOT_FOUND", "GetSnapshot(unknown id)");
    await expectCode(() => t.array.getSnapshot({ snapshotId: "" }), "INVALID_ARGUMENT", "GetSnapshot(empty id)");
    const r = await t.array.listSnapshots({ snapshotId: t.name("no-such-snap") });
    must(r.snapshots.length === 0, `ListSnapshots(unknown snapshot_id) returned ${r.snapshots.length}`);
    const r2 = await t.array.listSnapshots({ lunId: t.name("no-such-lun") });
    must(r2.snapshots.length === 0, `ListSnapshots(unknown lun_id) returned ${r2.snapshots.length}`);
  });

  area.it("snapshot.delete", "DeleteSnapshot removes the snapshot and is idempotent; an exported snapshot cannot be deleted (FAILED_PRECONDITION)", async (t) => {
    const lun = await t.createLun("del", t.blockSize * 2);
    const s = await t.snapshotOne(lun.lunId);
    const exp = await t.exportOf({ snapshotId: s.snapshotId });
    await expectCode(() => t.array.deleteSnapshot({ snapshotId: s.snapshotId }), "FAILED_PRECONDITION", "DeleteSnapshot(exported snapshot)");
    await t.array.deleteExport({ exportId: exp.exportId });
    await t.array.deleteSnapshot({ snapshotId: s.snapshotId });
    await expectCode(() => t.array.getSnapshot({ snapshotId: s.snapshotId }), "NOT_FOUND", "GetSnapshot after DeleteSnapshot");
    for (let i = 0; i < t.idempotentCount; i++) await t.array.deleteSnapshot({ snapshotId: s.snapshotId });
    const list = await t.array.listSnapshots({ lunId: lun.lunId });
    must(!list.snapshots.some((x) => x.snapshotId === s.snapshotId), "a deleted snapshot is still listed");
  });

  area.it(
    "group.lifecycle",
    "CreateSnapshot of several LUNs is one group snapshot: one member per LUN in request order, each naming the group; GetGroupSnapshot returns them; the create is idempotent on name and the same name for other LUNs is ALREADY_EXISTS",
    async (t) => {
      const luns = [await t.createLun("g", t.blockSize * 2), await t.createLun("g", t.blockSize * 2), await t.createLun("g", t.blockSize * 2)];
      const ids = [luns[2], luns[0], luns[1]].map((l) => l?.lunId ?? "");
      const name = t.name("grp");
      const r = await t.array.createSnapshot({ name, lunIds: ids });
      must(r.groupSnapshotId !== "", "group_snapshot_id is empty");
      must(r.snapshots.length === ids.length, `${r.snapshots.length} members for ${ids.length} LUNs`);
      r.snapshots.forEach((s, i) => {
        must(s.lunId === ids[i], `member ${i} is of LUN ${s.lunId}, expected ${ids[i] ?? "?"} (request order)`);
        must(s.groupSnapshotId === r.groupSnapshotId, `member ${s.snapshotId} has group_snapshot_id "${s.groupSnapshotId}"`);
      });
      const g = await t.array.getGroupSnapshot({ groupSnapshotId: r.groupSnapshotId });
      must(g.snapshots.length === ids.length, `GetGroupSnapshot lists ${g.snapshots.length} members`);
      must(new Set(g.snapshots.map((s) => s.snapshotId)).size === ids.length && r.snapshots.every((s) => g.snapshots.some((x) => x.snapshotId === s.snapshotId)), "GetGroupSnapshot members differ from CreateSnapshot's");
      for (let i = 0; i < t.idempotentCount; i++) {
        const again = await t.array.createSnapshot({ name, lunIds: ids });
        must(again.groupSnapshotId === r.groupSnapshotId, `repeat ${i + 1} returned group ${again.groupSnapshotId}, expected ${r.groupSnapshotId}`);
      }
      await expectCode(() => t.array.createSnapshot({ name, lunIds: ids.slice(0, 2) }), "ALREADY_EXISTS", "CreateSnapshot(same group name, other LUN set)");
      await expectCode(() => t.array.getGroupSnapshot({ groupSnapshotId: t.name("no-such-group") }), "NOT_FOUND", "GetGroupSnapshot(unknown id)");
    },
    { requires: ["groupSnapshots"] },
  );

  area.it(
    "group.name-namespace",
    "plain and group snapshots share one name space: a group snapshot's name is ALREADY_EXISTS for a snapshot of one of its LUNs, and a plain snapshot's name is ALREADY_EXISTS for a group that includes its LUN",
    async (t) => {
      const a = await t.createLun("ns", t.blockSize * 2);
      const b = await t.createLun("ns", t.blockSize * 2);
      const g = t.name("ns-g");
      await t.array.createSnapshot({ name: g, lunIds: [a.lunId, b.lunId] });
      await expectCode(() => t.array.createSnapshot({ name: g, lunIds: [a.lunId] }), "ALREADY_EXISTS", "CreateSnapshot(one LUN of the group, the group's name)");
      const p = t.name("ns-p");
      await t.array.createSnapshot({ name: p, lunIds: [a.lunId] });
      await expectCode(() => t.array.createSnapshot({ name: p, lunIds: [a.lunId, b.lunId] }), "ALREADY_EXISTS", "CreateSnapshot(a group including the LUN, the plain snapshot's name)");
      const plain = await t.array.listSnapshots({ lunId: a.lunId });
      must(plain.snapshots.filter((s) => s.name === g || s.name === p).length === 1, `LUN ${a.lunId} lists ${plain.snapshots.filter((s) => s.name === g || s.name === p).length} snapshots named ${g} or ${p}, expected only ${p}`);
    },
    { requires: ["groupSnapshots"] },
  );

  area.it(
    "group.member-delete-refused",
    "a member of a group snapshot cannot be deleted alone (FAILED_PRECONDITION); DeleteGroupSnapshot with a wrong member list is INVALID_ARGUMENT; with the right one it deletes every member, idempotently",
    async (t) => {
      const a = await t.createLun("m", t.blockSize * 2);
      const b = await t.createLun("m", t.blockSize * 2);
      const r = await t.snapshot([a.lunId, b.lunId], "grp");
      const [m0, m1] = r.snapshots;
      must(m0 !== undefined && m1 !== undefined, "group snapshot has fewer than 2 members");
      await expectCode(() => t.array.deleteSnapshot({ snapshotId: m0.snapshotId }), "FAILED_PRECONDITION", "DeleteSnapshot(group member)");
      must((await t.array.getSnapshot({ snapshotId: m0.snapshotId })).snapshotId === m0.snapshotId, "the member is gone after a refused delete");
      await expectCode(() => t.array.deleteGroupSnapshot({ groupSnapshotId: r.groupSnapshotId, snapshotIds: [m0.snapshotId] }), "INVALID_ARGUMENT", "DeleteGroupSnapshot(partial snapshot_ids)");
      await t.array.deleteGroupSnapshot({ groupSnapshotId: r.groupSnapshotId, snapshotIds: [m1.snapshotId, m0.snapshotId] });
      await expectCode(() => t.array.getGroupSnapshot({ groupSnapshotId: r.groupSnapshotId }), "NOT_FOUND", "GetGroupSnapshot after delete");
      await expectCode(() => t.array.getSnapshot({ snapshotId: m0.snapshotId }), "NOT_FOUND", "GetSnapshot(member) after its group was deleted");
      for (let i = 0; i < t.idempotentCount; i++) await t.array.deleteGroupSnapshot({ groupSnapshotId: r.groupSnapshotId });
    },
    { requires: ["groupSnapshots"] },
  );

  area.it("snapshot.immutable", "snapshots are immutable: data written, trimmed or zeroed on the LUN after the cut never shows in the snapshot's export", async (t) => {
    const bs = t.blockSize;
    const size = bs * 16;
    const lun = await t.createLun("imm", size);
    const live = await t.open({ lunId: lun.lunId });
    const before = pattern(`${lun.name}/before`, size);
    await live.write(0, before);
    await live.flush();
    const s = await t.snapshotOne(lun.lunId);
    // Overwrite everything (whole blocks and a small unaligned write), trim and zero some blocks.
    await live.write(0, pattern(`${lun.name}/after`, size));
    await live.write(bs * 3 + 17, Buffer.from("leak-probe"));
    if (live.canTrim) await live.trim(bs * 8, bs * 2);
    if (live.canZero) await live.zero(bs * 12, bs * 2);
    await live.flush();
    const snap = await t.open({ snapshotId: s.snapshotId });
    must(snap.size === size, `snapshot export size ${snap.size}, expected ${size}`);
    const got = await snap.read(0, size);
    const at = firstDifference(got, before);
    must(at < 0, `snapshot export differs from the content at the cut at byte ${at} (block ${Math.floor(at / bs)}): a later write, trim or zero leaked into the snapshot`);
  });
});
