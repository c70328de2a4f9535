/**
 * The SnapshotMetadata stream rules (CSI spec, "Snapshot Metadata Service
 * RPCs"), one check per rule, each applied to every sampled GetMetadataDelta
 * stream (history.ts); `csi.allocated.stream-rules` applies all of them to the
 * GetMetadataAllocated streams. Plus resume, and allocated ⊇ delta.
 */
import { violation } from "../../assert.js";
import { csiCheck } from "../registry.js";
import { allocated, delta, history, samples, type Sample } from "../history.js";
import {
  FIXED_LENGTH,
  capacityConstant,
  coversDelta,
  firstAfterStart,
  fixedSizesEqual,
  maxResultsHonoured,
  noOverlap,
  resumeMatches,
  resumeOffset,
  tuplesInVolume,
  typeConstant,
  type StreamMessage,
  type StreamRequest,
  type Violation,
} from "../stream-rules.js";
import type { CsiContext } from "../context.js";

type Rule = (msgs: readonly StreamMessage[], req: StreamRequest) => Violation;

async function applyRule(t: CsiContext, rpc: Sample["rpc"], rules: readonly Rule[]): Promise<Sample[]> {
  const all = (await samples(t)).filter((s) => s.rpc === rpc);
  for (const s of all) {
    for (const rule of rules) {
      const v = rule(s.msgs, s.req);
      if (v !== undefined) violation(`${s.label}: ${v}`);
    }
  }
  return all;
}

/** Several messages are what makes the cross-message rules bite; without data there may be none. */
function needSeveral(t: CsiContext, all: readonly Sample[]): void {
  if (all.some((s) => s.msgs.length >= 2)) return;
  t.skip(`no sampled stream had two messages or more${t.hasData ? "" : " (no data access to write the volume, so its snapshots are empty)"}`);
}

const STREAM_RULES: readonly { name: string; rule: string; fn: Rule; several?: boolean }[] = [
  {
    name: "no-overlap",
    rule: "tuples are in ascending byte_offset order and never overlap, within a message and across messages: A before B implies A.byte_offset + A.size_bytes <= B.byte_offset (GetMetadataDeltaResponse, block_metadata; Metadata Format)",
    fn: noOverlap,
    several: true,
  },
  {
    name: "first-after-start",
    rule: "no tuple ends at or before the requested starting_offset S: S < B0.byte_offset + B0.size_bytes (GetMetadataDeltaRequest, starting_offset)",
    fn: firstAfterStart,
  },
  { name: "capacity-constant", rule: "volume_capacity_bytes is the same in every message of the stream (GetMetadataDeltaResponse, volume_capacity_bytes)", fn: capacityConstant, several: true },
  { name: "type-constant", rule: "block_metadata_type is FIXED_LENGTH or VARIABLE_LENGTH and does not change mid-stream (Metadata Format; GetMetadataDeltaResponse, block_metadata_type)", fn: typeConstant },
  { name: "max-results", rule: "with max_results > 0 no message carries more tuples than max_results (GetMetadataDeltaResponse, block_metadata)", fn: maxResultsHonoured },
  { name: "tuples-valid", rule: "every tuple has size_bytes > 0 and lies inside the volume (BlockMetadata; Metadata Format)", fn: (m) => tuplesInVolume(m) },
];

for (const r of STREAM_RULES) {
  csiCheck(`csi.delta.${r.name}`, r.rule, async (t) => {
    const all = await applyRule(t, "GetMetadataDelta", [r.fn]);
    if (r.several === true) needSeveral(t, all);
  });
}

csiCheck("csi.delta.fixed-equal", "in a FIXED_LENGTH stream every tuple has the same size_bytes (GetMetadataDeltaResponse, block_metadata_type)", async (t) => {
  const all = await applyRule(t, "GetMetadataDelta", [fixedSizesEqual]);
  if (!all.some((s) => s.msgs[0]?.blockMetadataType === FIXED_LENGTH)) t.skip("not applicable: the driver reports VARIABLE_LENGTH");
});

csiCheck(
  "csi.allocated.stream-rules",
  "GetMetadataAllocated keeps the same stream rules: ascending, non-overlapping tuples across messages, none ending at or before starting_offset, constant capacity and type, max_results honoured, FIXED_LENGTH sizes equal, tuples inside the volume (GetMetadataAllocatedResponse)",
  async (t) => {
    await applyRule(t, "GetMetadataAllocated", [...STREAM_RULES.map((r) => r.fn), fixedSizesEqual]);
  },
);

csiCheck(
  "csi.delta.resume",
  "a CO interrupted after N messages re-sends the request with starting_offset = the end of the last tuple received, and the resumed stream covers exactly what the uninterrupted one did from there (Special considerations for processing a snapshot metadata gRPC stream)",
  async (t) => {
    const h = await history(t);
    let tried = 0;
    const pairs: [string, string, string][] = [
      ["S1", h.s1, h.s2],
      ["S0", h.s0, h.s2],
    ];
    for (const [name, base, target] of pairs) {
      for (const maxResults of [1, 2]) {
        const full = await delta(t, base, target, { startingOffset: 0, maxResults });
        for (let n = 1; n < Math.min(full.length, 6); n++) {
          const at = resumeOffset(full.slice(0, n));
          if (at === undefined) continue;
          const resumed = await delta(t, base, target, { startingOffset: at, maxResults });
          tried++;
          const v = resumeMatches(full, resumed, at);
          if (v !== undefined) violation(`GetMetadataDelta(base=${name}, target=S2, max_results=${maxResults}) interrupted after ${n} message(s), resumed at ${at}: ${v}`);
        }
      }
    }
    if (tried === 0) t.skip(`the delta streams had fewer than two messages, nowhere to interrupt${t.hasData ? "" : " (no data access to write the volume)"}`);
  },
);

csiCheck(
  "csi.allocated.superset-of-delta",
  "for a snapshot made from an empty volume, every range GetMetadataDelta reports from the empty snapshot is allocated in the target (GetMetadataAllocated vs GetMetadataDelta)",
  async (t) => {
    // S1 only: S0..S1 is writes alone. A range written and then zeroed (S2)
    // may rightly be in the delta and not allocated.
    const h = await history(t);
    const d = await delta(t, h.s0, h.s1, { startingOffset: 0, maxResults: 0 });
    const a = await allocated(t, h.s1, { startingOffset: 0, maxResults: 0 });
    const v = coversDelta(a, d);
    if (v !== undefined) violation(`GetMetadataAllocated(S1) vs GetMetadataDelta(S0 empty, S1): ${v}`);
  },
);
