/**
 * Group write-order consistency under load (CSI: "write-order consistent or
 * fail"; DESIGN: the dependent-write oracle).
 *
 * A writer runs one dependency chain across the member LUNs: write #s goes to
 * member (s-1) mod n at slot floor((s-1)/n), and is issued only after #s-1 was
 * acknowledged. Meanwhile a noise writer keeps several unrelated writes in
 * flight on every member, so the array cuts under load. A group snapshot is
 * taken in the middle. It is consistent iff the chain writes it holds are
 * exactly #1..#K for some K (a prefix), and K covers every write acknowledged
 * before CreateSnapshot was called.
 */
import { must, violation } from "../assert.js";
import { STAMP_SIZE, pattern, readStamp, stamp } from "../data.js";
import { describeArea } from "../registry.js";
import type { NbdClient } from "../../../src/nbd/client.js";
import { errorMessage } from "../../../src/errors.js";

const MEMBERS = 3;
const CHAIN_SLOTS = 1024; // per member: 4 MiB of stamps
const NOISE_BYTES = 1024 * 1024;

describeArea("group", (area) => {
  area.it(
    "group.write-order",
    "a group snapshot is write-order consistent: the dependent writes it holds across its members form a prefix of the chain, including every write acknowledged before the call",
    async (t) => {
      const bs = t.blockSize;
      const chainBytes = CHAIN_SLOTS * STAMP_SIZE;
      const size = Math.ceil((chainBytes + NOISE_BYTES) / bs) * bs;
      const luns = [];
      for (let i = 0; i < MEMBERS; i++) luns.push(await t.createLun(`wo${i}`, size));
      const clients: NbdClient[] = [];
      for (const l of luns) clients.push(await t.open({ lunId: l.lunId }));
      const maxSeq = CHAIN_SLOTS * MEMBERS;

      let seq = 0;
      let stop = false;
      let chainError: unknown;
      const chain = (async () => {
        while (!stop && seq < maxSeq) {
          const s = seq + 1;
          const m = (s - 1) % MEMBERS;
          const slot = Math.floor((s - 1) / MEMBERS);
          await clients[m]?.write(slot * STAMP_SIZE, stamp(m, s));
          seq = s;
        }
      })().catch((e: unknown) => {
        chainError = e;
      });
      const noiseBuf = pattern("noise", 64 * 1024);
      const noise = (async () => {
        let i = 0;
        while (!stop) {
          const batch = clients.map((c, m) => c.write(chainBytes + ((i * 64 * 1024 + m * 4096) % (NOISE_BYTES - 64 * 1024)), noiseBuf));
          await Promise.all(batch);
          i++;
        }
      })().catch(() => undefined);

      const waitFor = async (n: number): Promise<void> => {
        const deadline = Date.now() + 20_000;
        while (seq < n && seq < maxSeq && chainError === undefined) {
          if (Date.now() > deadline) violation(`the chain made no progress (seq ${seq})`);
          await new Promise((r) => setTimeout(r, 2));
        }
      };
      await waitFor(150);
      const ackedBefore = seq;
      const r = await t.snapshot(
        luns.map((l) => l.lunId),
        "wo",
      );
      const afterCall = seq;
      await waitFor(afterCall + 150);
      stop = true;
      await chain;
      await noise;
      if (chainError !== undefined) throw chainError instanceof Error ? chainError : new Error(errorMessage(chainError));
      must(r.snapshots.length === MEMBERS, `group snapshot has ${r.snapshots.length} members for ${MEMBERS} LUNs`);

      // Which chain writes does each member hold?
      const held = new Map<number, number>(); // seq -> member
      for (let m = 0; m < MEMBERS; m++) {
        const member = r.snapshots[m];
        if (member === undefined) continue;
        const c = await t.open({ snapshotId: member.snapshotId });
        const data = await c.read(0, chainBytes);
        for (let slot = 0; slot < CHAIN_SLOTS; slot++) {
          const s = readStamp(data.subarray(slot * STAMP_SIZE, (slot + 1) * STAMP_SIZE), m);
          if (s === undefined) continue;
          if (s !== slot * MEMBERS + m + 1) violation(`member ${m} slot ${slot} holds write #${s}, which was never written there (torn or misplaced write)`);
          held.set(s, m);
        }
      }
      const k = held.size === 0 ? 0 : Math.max(...held.keys());
      for (let s = 1; s <= k; s++) {
        if (!held.has(s)) {
          violation(
            `the group snapshot holds write #${k} (member ${held.get(k) ?? "?"}) but not write #${s} (member ${(s - 1) % MEMBERS}), which was acknowledged before #${s + 1} was issued: ` +
              `members were cut at different moments (chain at ${ackedBefore} when CreateSnapshot was called, ${afterCall} when it returned)`,
          );
        }
      }
      must(k >= ackedBefore, `the group snapshot holds writes #1..#${k}, but #${ackedBefore} was acknowledged before CreateSnapshot was called`);
      must(k <= afterCall + 1, `the group snapshot holds write #${k}, issued after CreateSnapshot returned (at #${afterCall})`);
      t.log(`    chain ${ackedBefore}..${afterCall} around the call, snapshot holds #1..#${k}`);
    },
    { requires: ["groupSnapshots"] },
  );
});
