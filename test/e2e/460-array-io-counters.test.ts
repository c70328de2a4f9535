/**
 * GetPoolStats carries array-side NBD I/O counters, so a client can measure what
 * it really read from the array (issue 6's incremental-read benchmark uses them).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdClient } from "../../src/nbd/client.js";
import type { ArrayClient } from "../../src/rpc/array-client.js";
import { startArrayFixture, type ArrayDaemon, type ArrayFixture } from "../support/array-daemon.js";

const MiB = 1024 * 1024;

describe("array-side NBD I/O counters", () => {
  let d: ArrayDaemon;
  let rpc: ArrayClient;

  let fx: ArrayFixture | undefined;
  beforeAll(async () => {
    fx = await startArrayFixture("sanbox-e2e-460-");
    ({ d, rpc } = fx);
  });
  afterAll(async () => fx?.stop());

  it("count bytes written to LUN exports and bytes read from snapshot exports separately", async () => {
    const lun = await rpc.createLun({ name: "disk", sizeBytes: 16 * MiB });
    const before = await rpc.getPoolStats({});
    const live = await NbdClient.connect(d.uri("lun/disk"));
    await live.write(0, Buffer.alloc(2 * MiB, 7));
    await live.flush();
    await live.read(0, MiB); // a live read: counted in nbd_bytes_read only
    await live.close();
    const snap = (await rpc.createSnapshot({ name: "s", lunIds: [lun.lunId] })).snapshots[0]?.snapshotId ?? "";
    const c = await NbdClient.connect(d.uri(`snap/${snap}/disk`));
    await c.read(0, 3 * MiB);
    await c.close();
    const after = await rpc.getPoolStats({});
    expect(after.nbdBytesWritten - before.nbdBytesWritten).toBe(2 * MiB);
    expect(after.nbdSnapshotBytesRead - before.nbdSnapshotBytesRead).toBe(3 * MiB);
    expect(after.nbdBytesRead - before.nbdBytesRead).toBe(4 * MiB);
  });
});
