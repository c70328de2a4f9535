/**
 * Revert exactness on a real array, for every kind of change a flat file can
 * see between T1 and T2: grown, shrunk, trimmed, rewritten in place,
 * reallocated (a trimmed range written again lands on new blocks), deleted and
 * its blocks reused by another file, created. The image is built from S2 as the
 * backup does (the full plan), then reverted with planRevert(S2 → S1) and the
 * array's CBT(S1, S2) read from S1: it must equal the file read from S1, byte
 * for byte, and the revert must read no more than the file ranges it touched.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdDevice } from "../../src/nbd/nbd-device.js";
import { Datastore } from "../../src/datastore/datastore.js";
import { totalLength } from "../../src/extents/index.js";
import { NbdClient } from "../../src/nbd/client.js";
import type { ArrayClient } from "../../src/rpc/array-client.js";
import { collect } from "../../src/rpc/client.js";
import { copyExtents } from "../../plugin/backup/copy-extents.js";
import { ExportReader } from "../../plugin/backup/export-reader.js";
import { GrpcArrayDriver } from "../../plugin/backup/grpc-array-driver.js";
import { Repository } from "../../plugin/backup/repository/repository.js";
import { ImageReader } from "../../plugin/backup/repository/image-reader.js";
import { planRevert, type FileState } from "../../plugin/backup/revert-plan.js";
import { startArrayFixture, type ArrayDaemon, type ArrayFixture } from "../support/array-daemon.js";

const K = 1024;
const fill = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) % 251));

describe("revert exactness against array snapshots", () => {
  let tmp: { dir: string; cleanup: () => void };
  let d: ArrayDaemon;
  let rpc: ArrayClient;

  let fx: ArrayFixture | undefined;
  beforeAll(async () => {
    fx = await startArrayFixture("sanbox-e2e-630-");
    ({ tmp, d, rpc } = fx);
  });
  afterAll(async () => fx?.stop());

  it("grown, shrunk, trimmed, rewritten, reallocated, reused and new files revert to S1 exactly", async () => {
    const lun = await rpc.createLun({ name: "ds", sizeBytes: 32 * 1024 * K });
    const exp = await rpc.createExport({ lunId: lun.lunId });
    const live = await NbdClient.connect(exp.uri);
    const ds = await Datastore.format(new NbdDevice(live, false), { blockSize: 64 * K });
    const files = ["grown", "shrunk", "trimmed", "rewritten", "reallocated", "deleted", "new"];
    for (const [i, f] of files.entries()) {
      if (f === "new") continue;
      await ds.create(`/${f}`, { size: 512 * K });
      await ds.write(`/${f}`, 0, fill(512 * K, i));
    }
    await ds.create("/new", { size: 0 });
    await ds.flush();
    const s1 = (await rpc.createSnapshot({ name: "s1", lunIds: [lun.lunId] })).snapshots[0];

    await ds.truncate("/grown", 900 * K);
    await ds.write("/grown", 700 * K, fill(100 * K, 9));
    await ds.truncate("/shrunk", 200 * K + 512);
    await ds.trim("/trimmed", 128 * K, 192 * K);
    await ds.write("/rewritten", 10 * K, fill(300 * K, 11));
    await ds.trim("/reallocated", 0, 256 * K);
    await ds.write("/reallocated", 0, fill(256 * K, 12));
    await ds.delete("/deleted");
    await ds.commit();
    await ds.truncate("/new", 640 * K);
    await ds.write("/new", 0, fill(640 * K, 13));
    await ds.flush();
    const s2 = (await rpc.createSnapshot({ name: "s2", lunIds: [lun.lunId] })).snapshots[0];
    await live.close();
    await rpc.deleteExport({ exportId: exp.exportId });
    if (s1 === undefined || s2 === undefined) throw new Error("no snapshot");

    const array = GrpcArrayDriver.connect({ endpoint: d.rpcEndpoint });
    const repo = await Repository.open(join(tmp.dir, "repo"), { create: true, chunkSize: 64 * K });
    const e1 = await array.exportSnapshot(s1.snapshotId);
    const e2 = await array.exportSnapshot(s2.snapshotId);
    const r1 = await ExportReader.open(e1.uri);
    const r2 = await ExportReader.open(e2.uri);
    const c1 = await NbdClient.connect(e1.uri);
    const c2 = await NbdClient.connect(e2.uri);
    const ds1 = await Datastore.open(new NbdDevice(c1, false), { readOnly: true });
    const ds2 = await Datastore.open(new NbdDevice(c2, false), { readOnly: true });
    const changed = (await collect(array.changedExtents(s1.snapshotId, s2.snapshotId))).map((e) => ({ offset: e.offset, length: e.length }));
    const state = async (d2: Datastore, path: string): Promise<FileState> =>
      (await d2.exists(path)) ? { map: await d2.extentMap(path), size: (await d2.stat(path)).size } : { map: [], size: 0 };
    try {
      const pending = await repo.begin("exactness");
      for (const f of files) {
        const at1 = await state(ds1, `/${f}`);
        const at2 = await state(ds2, `/${f}`);
        const image = pending.image(undefined);
        await copyExtents(r2, planRevert({ map: [], size: 0 }, at2, []), image);
        const plan = planRevert(at2, at1, changed);
        const before = r1.bytesRead;
        await copyExtents(r1, plan, image);
        expect(r1.bytesRead - before, `${f}: revert read more than it touched`).toBeLessThanOrEqual(totalLength(plan.touched));
        const idx = await image.finish();
        const got = await new ImageReader(repo.chunks, idx).read(0, idx.size);
        const want = at1.size > 0 ? await ds1.readFile(`/${f}`) : Buffer.alloc(0);
        expect(got.length, `${f} size`).toBe(want.length);
        expect(got.equals(want), `${f} differs from S1`).toBe(true);
        if (f !== "new") expect(plan.touched.length > 0 || at1.size !== at2.size, `${f}: the change was seen`).toBe(true);
      }
      await pending.abandon();
    } finally {
      await c1.close();
      await c2.close();
      await r1.close();
      await r2.close();
      array.close();
    }
  });
});
