/**
 * A group snapshot is write-order consistent (CSI "MUST give a write-order
 * consistency guarantee or fail"). Two NBD clients, one per LUN, run one
 * dependent-write chain: write n goes to LUN n%2 and starts only after write n-1
 * was acknowledged. While the chain runs, a group snapshot of both LUNs is cut
 * through gRPC. The writes the two member snapshots hold must form a prefix of
 * the chain: no write without every write before it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdClient } from "../../src/nbd/client.js";
import type { ArrayClient } from "../../src/rpc/array-client.js";
import { startArrayFixture, type ArrayDaemon, type ArrayFixture } from "../support/array-daemon.js";

const SLOT = 4096;
/** Upper bound on the chain: 10k 4 KiB slots per LUN, well inside 64 MiB, never wrapping. */
const MAX_WRITES = 20_000;

function stamp(seq: number): Buffer {
  const b = Buffer.alloc(SLOT);
  b.writeUInt32LE(seq, 0);
  b.writeUInt32LE(seq, SLOT - 4);
  return b;
}

describe("group snapshot under concurrent dependent writes", () => {
  let d: ArrayDaemon;
  let rpc: ArrayClient;

  let fx: ArrayFixture | undefined;
  beforeAll(async () => {
    fx = await startArrayFixture("sanbox-e2e-410-");
    ({ d, rpc } = fx);
  });
  afterAll(async () => fx?.stop());

  it("member snapshots hold a prefix of the dependent-write chain", async () => {
    const a = await rpc.createLun({ name: "vmdk", sizeBytes: 64 * 1024 * 1024 });
    const b = await rpc.createLun({ name: "rdm", sizeBytes: 64 * 1024 * 1024 });
    const ca = await NbdClient.connect(d.uri("lun/vmdk"));
    const cb = await NbdClient.connect(d.uri("lun/rdm"));
    const clients = [ca, cb];
    let written = 0;
    let stopAt = MAX_WRITES;
    const chain = (async () => {
      for (let seq = 1; seq <= stopAt; seq++) {
        const c = clients[seq % 2];
        if (!c) throw new Error("unreachable");
        await c.write(Math.floor(seq / 2) * SLOT, stamp(seq));
        written = seq;
      }
    })();
    // Cut the group snapshot in the middle of the chain, then let it run on a while.
    while (written < 500) await new Promise((r) => setTimeout(r, 2));
    const ackedBefore = written;
    const snap = await rpc.createSnapshot({ name: "cg1", lunIds: [a.lunId, b.lunId] });
    stopAt = Math.min(MAX_WRITES, written + 500);
    await chain;
    const total = written;
    await ca.close();
    await cb.close();

    expect(snap.groupSnapshotId).not.toBe("");
    expect(snap.snapshots.map((s) => s.lunId)).toEqual([a.lunId, b.lunId]);
    const seen = new Set<number>();
    for (const [i, s] of snap.snapshots.entries()) {
      const c = await NbdClient.connect(d.uri(`snap/${s.snapshotId}/${i === 0 ? "vmdk" : "rdm"}`));
      const data = await c.read(0, (MAX_WRITES / 2 + 1) * SLOT);
      await c.close();
      for (let off = 0; off < data.length; off += SLOT) {
        const seq = data.readUInt32LE(off);
        if (seq !== 0) {
          expect(data.readUInt32LE(off + SLOT - 4)).toBe(seq); // no torn block
          expect(seq % 2).toBe(i === 0 ? 0 : 1);
          seen.add(seq);
        }
      }
    }
    const k = seen.size;
    for (let seq = 1; seq <= k; seq++) expect(seen.has(seq)).toBe(true);
    // The cut landed inside the chain: everything acknowledged before the call, not the writes after it.
    expect(k).toBeGreaterThanOrEqual(ackedBefore);
    expect(k).toBeLessThan(total);

    // Members are deleted only with their group.
    const member = snap.snapshots[0]?.snapshotId ?? "";
    await expect(rpc.deleteSnapshot({ snapshotId: member })).rejects.toMatchObject({ code: "FAILED_PRECONDITION" });
    const listed = await rpc.listSnapshots({ groupSnapshotId: snap.groupSnapshotId });
    expect(listed.snapshots).toHaveLength(2);
    await rpc.deleteGroupSnapshot({ groupSnapshotId: snap.groupSnapshotId });
    await expect(rpc.getSnapshot({ snapshotId: member })).rejects.toMatchObject({ code: "NOT_FOUND" });
  });
});
