/**
 * LUN lifecycle: create (rounded, idempotent on name), get by id and by name,
 * list with paging, resize, delete (idempotent), and every documented error
 * code of these calls (docs/contract.md "Errors").
 */
import { randomBytes } from "node:crypto";
import { expectCode, must } from "../assert.js";
import { describeArea } from "../registry.js";

describeArea("lun", (area) => {
  area.it("lun.create", "CreateLun makes a thin LUN whose size is the request rounded up to the block size, with an id and an NAA identifier; GetLun by id and by name returns it", async (t) => {
    const bs = t.blockSize;
    const want = bs * 8 + 1;
    const lun = await t.createLun("create", want);
    must(lun.lunId !== "", "lun_id is empty");
    must(lun.sizeBytes === Math.ceil(want / bs) * bs, `size_bytes ${lun.sizeBytes}, expected ${want} rounded up to ${bs}: ${Math.ceil(want / bs) * bs}`);
    must(/^naa\.[0-9a-f]+$/i.test(lun.naa), `naa "${lun.naa}" is not an NAA identifier (naa.<hex>)`);
    must(lun.allocatedBytes === 0, `a new thin LUN has allocated_bytes ${lun.allocatedBytes}`);
    const byId = await t.array.getLun({ lunId: lun.lunId });
    must(byId.name === lun.name && byId.sizeBytes === lun.sizeBytes, `GetLun(lun_id) returned ${byId.name}/${byId.sizeBytes}`);
    const byName = await t.array.getLun({ name: lun.name });
    must(byName.lunId === lun.lunId, `GetLun(name) returned lun_id ${byName.lunId}, expected ${lun.lunId}`);
  });

  area.it("lun.create-idempotent", "CreateLun is idempotent on name: the same name and size returns the same LUN every time", async (t) => {
    const first = await t.createLun("idem", t.blockSize * 4);
    for (let i = 0; i < t.idempotentCount; i++) {
      const again = await t.array.createLun({ name: first.name, sizeBytes: t.blockSize * 4 });
      must(again.lunId === first.lunId, `repeat ${i + 1} returned lun_id ${again.lunId}, expected ${first.lunId}`);
    }
  });

  area.it("lun.create-conflict", "CreateLun with a name in use and another size is ALREADY_EXISTS", async (t) => {
    const lun = await t.createLun("conflict", t.blockSize * 4);
    await expectCode(() => t.array.createLun({ name: lun.name, sizeBytes: t.blockSize * 8 }), "ALREADY_EXISTS", "CreateLun(same name, other size)");
  });

  area.it("lun.create-invalid", "CreateLun with an empty or malformed name, or a size <= 0, is INVALID_ARGUMENT", async (t) => {
    const track = async (p: Promise<{ lunId: string }>): Promise<unknown> => {
      const l = await p;
      t.track.lun(l.lunId);
      return l;
    };
    await expectCode(() => track(t.array.createLun({ name: "", sizeBytes: t.blockSize })), "INVALID_ARGUMENT", "CreateLun(name empty)");
    await expectCode(() => track(t.array.createLun({ name: t.name("zero"), sizeBytes: 0 })), "INVALID_ARGUMENT", "CreateLun(size 0)");
    await expectCode(() => track(t.array.createLun({ name: t.name("neg"), sizeBytes: -t.blockSize })), "INVALID_ARGUMENT", "CreateLun(size < 0)");
    await expectCode(() => track(t.array.createLun({ name: `-${t.name("dash")}`, sizeBytes: t.blockSize })), "INVALID_ARGUMENT", "CreateLun(name starting with '-')");
    await expectCode(() => track(t.array.createLun({ name: `${t.name("slash")}/x`, sizeBytes: t.blockSize })), "INVALID_ARGUMENT", "CreateLun(name with '/')");
  });

  area.it("lun.get-unknown", "GetLun of an unknown id or name is NOT_FOUND; neither or both of lun_id and name is INVALID_ARGUMENT", async (t) => {
    await expectCode(() => t.array.getLun({ lunId: t.name("no-such-lun") }), "NOT_FOUND", "GetLun(unknown lun_id)");
    await expectCode(() => t.array.getLun({ name: t.name("no-such-lun") }), "NOT_FOUND", "GetLun(unknown name)");
    await expectCode(() => t.array.getLun({}), "INVALID_ARGUMENT", "GetLun(no lun_id, no name)");
    const lun = await t.createLun("get2", t.blockSize);
    await expectCode(() => t.array.getLun({ lunId: lun.lunId, name: lun.name }), "INVALID_ARGUMENT", "GetLun(lun_id and name)");
  });

  area.it(
    "lun.resize",
    "ResizeLun grows and shrinks (rounded up to the block size); unknown ids are NOT_FOUND and sizes <= 0 INVALID_ARGUMENT",
    async (t) => {
      const bs = t.blockSize;
      const lun = await t.createLun("resize", bs * 4);
      const grown = await t.array.resizeLun({ lunId: lun.lunId, sizeBytes: bs * 8 });
      must(grown.sizeBytes === bs * 8, `grow to ${bs * 8} gave size ${grown.sizeBytes}`);
      const shrunk = await t.array.resizeLun({ lunId: lun.lunId, sizeBytes: bs * 2 - 1 });
      must(shrunk.sizeBytes === bs * 2, `shrink to ${bs * 2 - 1} gave size ${shrunk.sizeBytes}, expected ${bs * 2}`);
      must((await t.array.getLun({ lunId: lun.lunId })).sizeBytes === bs * 2, "GetLun does not show the new size");
      await expectCode(() => t.array.resizeLun({ lunId: t.name("no-such-lun"), sizeBytes: bs }), "NOT_FOUND", "ResizeLun(unknown lun_id)");
      await expectCode(() => t.array.resizeLun({ lunId: lun.lunId, sizeBytes: 0 }), "INVALID_ARGUMENT", "ResizeLun(size 0)");
    },
    { requires: ["resize"] },
  );

  area.it("lun.delete", "DeleteLun removes the LUN (GetLun is then NOT_FOUND) and is idempotent: deleting it again, or an unknown id, succeeds", async (t) => {
    const lun = await t.createLun("delete", t.blockSize);
    await t.array.deleteLun({ lunId: lun.lunId });
    await expectCode(() => t.array.getLun({ lunId: lun.lunId }), "NOT_FOUND", "GetLun after DeleteLun");
    for (let i = 0; i < t.idempotentCount; i++) await t.array.deleteLun({ lunId: lun.lunId });
    await t.array.deleteLun({ lunId: t.name("no-such-lun") });
    await expectCode(() => t.array.deleteLun({ lunId: "" }), "INVALID_ARGUMENT", "DeleteLun(empty lun_id)");
  });

  area.it("lun.delete-precondition", "DeleteLun of a LUN that has snapshots, exports or mappings is FAILED_PRECONDITION, and the LUN survives", async (t) => {
    const lun = await t.createLun("busy", t.blockSize * 2);
    const exp = await t.exportOf({ lunId: lun.lunId });
    await expectCode(() => t.array.deleteLun({ lunId: lun.lunId }), "FAILED_PRECONDITION", "DeleteLun(exported LUN)");
    await t.array.deleteExport({ exportId: exp.exportId });
    const s = await t.snapshotOne(lun.lunId);
    await expectCode(() => t.array.deleteLun({ lunId: lun.lunId }), "FAILED_PRECONDITION", "DeleteLun(LUN with a snapshot)");
    must((await t.array.getLun({ lunId: lun.lunId })).lunId === lun.lunId, "the LUN is gone after a refused delete");
    await t.array.deleteSnapshot({ snapshotId: s.snapshotId });
    const host = await t.array.createHost({ name: t.name("h"), pskKey: randomBytes(32) });
    t.track.host(host.hostId);
    await t.array.mapLun({ lunId: lun.lunId, hostId: host.hostId });
    await expectCode(() => t.array.deleteLun({ lunId: lun.lunId }), "FAILED_PRECONDITION", "DeleteLun(mapped LUN)");
    await t.array.unmapLun({ lunId: lun.lunId, hostId: host.hostId });
    await t.array.deleteLun({ lunId: lun.lunId });
  });

  area.it("lun.list-paging", "ListLuns pages with max_entries and next_token, returning every LUN exactly once; a bad token is ABORTED, a negative max_entries INVALID_ARGUMENT", async (t) => {
    const mine = new Set<string>();
    for (let i = 0; i < 5; i++) mine.add((await t.createLun("page", t.blockSize)).lunId);
    const seen = new Map<string, number>();
    let token = "";
    for (let pages = 0; ; pages++) {
      must(pages < 10_000, "ListLuns never returned an empty next_token");
      const r = await t.array.listLuns({ maxEntries: 2, startingToken: token });
      must(r.luns.length <= 2, `a page with max_entries 2 has ${r.luns.length} LUNs`);
      for (const l of r.luns) seen.set(l.lunId, (seen.get(l.lunId) ?? 0) + 1);
      if (r.nextToken === "") break;
      token = r.nextToken;
    }
    for (const id of mine) must(seen.get(id) === 1, `LUN ${id} was listed ${seen.get(id) ?? 0} times, expected once`);
    await expectCode(() => t.array.listLuns({ startingToken: "not-a-token-\u0001" }), "ABORTED", "ListLuns(invalid starting_token)");
    await expectCode(() => t.array.listLuns({ maxEntries: -1 }), "INVALID_ARGUMENT", "ListLuns(max_entries -1)");
  });
});
