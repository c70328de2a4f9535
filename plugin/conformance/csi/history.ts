/**
 * The shared fixture of the SnapshotMetadata checks: one volume with three
 * snapshots, S0 (empty), S1 (after a first round of writes) and S2 (after
 * overwrites, new writes and a zeroed range), and the streams every rule is
 * checked on: GetMetadataDelta for (S1,S2), (S0,S1), (S0,S2) and
 * GetMetadataAllocated for S1 and S2, each with max_results 0, 1, 2 and 3 and
 * starting offsets 0, inside a tuple, at the end of a tuple, and mid-volume.
 *
 * The writes need data access (NBD through the endpoint's ArrayService); a
 * plain CSI driver gets the same snapshots of an untouched volume, where the
 * streams are (legitimately) short, and the checks that need several messages
 * say so instead of passing vacuously.
 */
import { pattern } from "../data.js";
import type { CsiContext } from "./context.js";
import type { StreamMessage, StreamRequest } from "./stream-rules.js";

export const VOLUME_BYTES = 16 * 1024 * 1024;
const UNIT = 64 * 1024;
export const MAX_RESULTS = [0, 1, 2, 3] as const;

export interface History {
  volumeId: string;
  capacity: number;
  s0: string;
  s1: string;
  s2: string;
  /** Whether data was written (data access available). */
  written: boolean;
}

export interface Sample {
  /** The call, as a failure line names it. */
  label: string;
  rpc: "GetMetadataDelta" | "GetMetadataAllocated";
  req: StreamRequest;
  msgs: StreamMessage[];
}

export async function collectStream(it: AsyncIterable<StreamMessage>): Promise<StreamMessage[]> {
  const out: StreamMessage[] = [];
  for await (const m of it) out.push({ blockMetadataType: m.blockMetadataType, volumeCapacityBytes: m.volumeCapacityBytes, blockMetadata: m.blockMetadata.map((b) => ({ byteOffset: b.byteOffset, sizeBytes: b.sizeBytes })) });
  return out;
}

export function delta(t: CsiContext, base: string, target: string, req: StreamRequest): Promise<StreamMessage[]> {
  return collectStream(t.csi.snapshotMetadata.getMetadataDelta({ baseSnapshotId: base, targetSnapshotId: target, startingOffset: req.startingOffset, maxResults: req.maxResults, secrets: t.secrets }));
}

export function allocated(t: CsiContext, snapshotId: string, req: StreamRequest): Promise<StreamMessage[]> {
  return collectStream(t.csi.snapshotMetadata.getMetadataAllocated({ snapshotId, startingOffset: req.startingOffset, maxResults: req.maxResults, secrets: t.secrets }));
}

const HISTORY = Symbol("csi history");
const SAMPLES = Symbol("csi samples");

export function history(t: CsiContext): Promise<History> {
  return t.fixture(HISTORY, async () => {
    const v = await t.createVolume("meta", VOLUME_BYTES);
    const s0 = await t.snapshot(v.volumeId, "s0");
    if (!t.hasData) {
      const s1 = await t.snapshot(v.volumeId, "s1");
      const s2 = await t.snapshot(v.volumeId, "s2");
      return { volumeId: v.volumeId, capacity: v.capacityBytes, s0: s0.snapshotId, s1: s1.snapshotId, s2: s2.snapshotId, written: false };
    }
    const c = await t.open({ lunId: v.volumeId });
    for (let i = 0; i < 24; i++) await c.write(i * 8 * UNIT, pattern(`s1/${i}`, (1 + (i % 3)) * UNIT));
    await c.flush();
    const s1 = await t.snapshot(v.volumeId, "s1");
    for (let i = 0; i < 24; i += 3) await c.write(i * 8 * UNIT + UNIT, pattern(`s2/${i}`, UNIT));
    for (let j = 0; j < 6; j++) await c.write(12 * 1024 * 1024 + j * 4 * UNIT, pattern(`s2/new/${j}`, UNIT));
    await c.zero(5 * 8 * UNIT, UNIT);
    await c.flush();
    const s2 = await t.snapshot(v.volumeId, "s2");
    return { volumeId: v.volumeId, capacity: v.capacityBytes, s0: s0.snapshotId, s1: s1.snapshotId, s2: s2.snapshotId, written: true };
  });
}

/** Starting offsets derived from a full stream: 0, inside its 2nd tuple, at the end of its 3rd, mid-volume. */
function startsOf(full: readonly StreamMessage[], capacity: number): number[] {
  const ts = full.flatMap((m) => m.blockMetadata);
  const out = new Set<number>([0, Math.floor(capacity / 2)]);
  const second = ts[1];
  if (second !== undefined) out.add(second.byteOffset + Math.max(1, Math.floor(second.sizeBytes / 2)));
  const third = ts[2];
  if (third !== undefined) out.add(third.byteOffset + third.sizeBytes);
  return [...out].sort((a, b) => a - b);
}

/** Every sampled stream (built once per run). */
export function samples(t: CsiContext): Promise<Sample[]> {
  return t.fixture(SAMPLES, async () => {
    const h = await history(t);
    const out: Sample[] = [];
    const calls: { rpc: Sample["rpc"]; name: string; fetch: (req: StreamRequest) => Promise<StreamMessage[]> }[] = [
      { rpc: "GetMetadataDelta", name: "base=S1 target=S2", fetch: (req) => delta(t, h.s1, h.s2, req) },
      { rpc: "GetMetadataDelta", name: "base=S0 target=S1", fetch: (req) => delta(t, h.s0, h.s1, req) },
      { rpc: "GetMetadataDelta", name: "base=S0 target=S2", fetch: (req) => delta(t, h.s0, h.s2, req) },
      { rpc: "GetMetadataAllocated", name: "snapshot=S1", fetch: (req) => allocated(t, h.s1, req) },
      { rpc: "GetMetadataAllocated", name: "snapshot=S2", fetch: (req) => allocated(t, h.s2, req) },
    ];
    for (const c of calls) {
      const full = await c.fetch({ startingOffset: 0, maxResults: 0 });
      for (const startingOffset of startsOf(full, h.capacity)) {
        for (const maxResults of MAX_RESULTS) {
          const req = { startingOffset, maxResults };
          const msgs = startingOffset === 0 && maxResults === 0 ? full : await c.fetch(req);
          out.push({ rpc: c.rpc, req, msgs, label: `${c.rpc}(${c.name}, starting_offset=${startingOffset}, max_results=${maxResults})` });
        }
      }
    }
    return out;
  });
}
