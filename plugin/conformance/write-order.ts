/**
 * The dependent-write chain check of a group cut, shared by the array suite
 * (group.write-order, CreateSnapshot with several LUNs) and the CSI suite
 * (csi.group.atomic, CreateVolumeGroupSnapshot). CSI: "write-order consistent
 * or fail"; DESIGN: the dependent-write oracle.
 *
 * A writer runs one dependency chain across the members: write #s goes to
 * member (s-1) mod n at slot floor((s-1)/n), and is issued only after #s-1 was
 * acknowledged. Meanwhile a noise writer keeps several unrelated writes in
 * flight on every member, so the cut happens under load. The group is cut in
 * the middle. It is consistent iff the chain writes it holds are exactly
 * #1..#K for some K (a prefix), and K covers every write acknowledged before
 * the cut was requested.
 */
import { errorMessage } from "../../src/errors.js";
import type { NbdClient } from "../../src/nbd/client.js";
import { must, violation } from "./assert.js";
import { STAMP_SIZE, pattern, readStamp, stamp } from "./data.js";

export const MEMBERS = 3;
const CHAIN_SLOTS = 1024; // per member: 4 MiB of stamps
const NOISE_BYTES = 1024 * 1024;
const CHAIN_BYTES = CHAIN_SLOTS * STAMP_SIZE;

/** The size each member volume needs, rounded up to `blockSize`. */
export function memberBytes(blockSize: number): number {
  return Math.ceil((CHAIN_BYTES + NOISE_BYTES) / blockSize) * blockSize;
}

export interface GroupCut {
  /** Read-write connections to the members, in member order. */
  clients: readonly NbdClient[];
  /** Cuts the group; returns the member snapshot ids in member order. */
  cut(): Promise<string[]>;
  openSnapshot(snapshotId: string): Promise<NbdClient>;
  /** What the cut is called in evidence ("CreateSnapshot", "CreateVolumeGroupSnapshot"). */
  callName: string;
}

/** Runs the chain, cuts, and checks the prefix rule; returns a progress line. */
export async function checkWriteOrder(g: GroupCut): Promise<string> {
  const clients = g.clients;
  const chainBytes = CHAIN_BYTES;
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
  let members: string[];
  try {
    members = await g.cut();
  } catch (e: unknown) {
    // On a failed cut the writers must stop too, or they outlive the check.
    stop = true;
    await chain;
    await noise;
    throw e;
  }
  const afterCall = seq;
  await waitFor(afterCall + 150);
  stop = true;
  await chain;
  await noise;
  if (chainError !== undefined) throw chainError instanceof Error ? chainError : new Error(errorMessage(chainError));
  must(members.length === MEMBERS, `the group has ${members.length} members for ${MEMBERS} volumes`);

  // Which chain writes does each member hold?
  const held = new Map<number, number>(); // seq -> member
  for (let m = 0; m < MEMBERS; m++) {
    const member = members[m];
    if (member === undefined) continue;
    const c = await g.openSnapshot(member);
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
          `members were cut at different moments (chain at ${ackedBefore} when ${g.callName} was called, ${afterCall} when it returned)`,
      );
    }
  }
  must(k >= ackedBefore, `the group snapshot holds writes #1..#${k}, but #${ackedBefore} was acknowledged before ${g.callName} was called`);
  must(k <= afterCall + 1, `the group snapshot holds write #${k}, issued after ${g.callName} returned (at #${afterCall})`);
  return `    chain ${ackedBefore}..${afterCall} around the call, the group holds #1..#${k}`;
}
