/**
 * The CSI SnapshotMetadata stream rules (plugin/conformance/csi/stream-rules.ts):
 * every well-formed stream passes every rule, and each kind of damage a
 * failpoint or a buggy driver can do is caught by its rule, and only by the
 * rules that speak about it.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  FIXED_LENGTH,
  VARIABLE_LENGTH,
  applyDelta,
  capacityConstant,
  coversDelta,
  firstAfterStart,
  fixedSizesEqual,
  maxResultsHonoured,
  noOverlap,
  ranges,
  resumeMatches,
  resumeOffset,
  tuplesInVolume,
  typeConstant,
  type StreamMessage,
  type Tuple,
} from "../../../plugin/conformance/csi/stream-rules.js";

const GRAIN = 16;
const CAPACITY = 64 * GRAIN;

/** Sorted, disjoint tuples inside the volume (FIXED: one grain each; VARIABLE: runs of grains). */
function tuplesOf(grains: readonly number[], fixed: boolean): Tuple[] {
  const sorted = [...new Set(grains)].sort((a, b) => a - b);
  const out: Tuple[] = [];
  for (const g of sorted) {
    const last = out[out.length - 1];
    if (!fixed && last !== undefined && last.byteOffset + last.sizeBytes === g * GRAIN) last.sizeBytes += GRAIN;
    else out.push({ byteOffset: g * GRAIN, sizeBytes: GRAIN });
  }
  return out;
}

function split(ts: readonly Tuple[], per: number, type: number): StreamMessage[] {
  const msgs: StreamMessage[] = [];
  for (let i = 0; i < ts.length; i += per) msgs.push({ blockMetadataType: type, volumeCapacityBytes: CAPACITY, blockMetadata: ts.slice(i, i + per) });
  if (msgs.length === 0) msgs.push({ blockMetadataType: type, volumeCapacityBytes: CAPACITY, blockMetadata: [] });
  return msgs;
}

const stream = fc
  .record({
    grains: fc.array(fc.nat(63), { minLength: 2, maxLength: 40 }),
    fixed: fc.boolean(),
    per: fc.integer({ min: 1, max: 5 }),
  })
  .map(({ grains, fixed, per }) => ({ per, msgs: split(tuplesOf(grains, fixed), per, fixed ? FIXED_LENGTH : VARIABLE_LENGTH) }));

const multi = stream.filter((s) => s.msgs.length >= 2 && s.msgs.every((m) => m.blockMetadata.length > 0));

function clone(msgs: readonly StreamMessage[]): StreamMessage[] {
  return msgs.map((m) => ({ ...m, blockMetadata: m.blockMetadata.map((t) => ({ ...t })) }));
}

function allRules(msgs: readonly StreamMessage[], per: number): (string | undefined)[] {
  const req = { startingOffset: 0, maxResults: per };
  return [noOverlap(msgs), firstAfterStart(msgs, req), capacityConstant(msgs), typeConstant(msgs), maxResultsHonoured(msgs, req), fixedSizesEqual(msgs), tuplesInVolume(msgs)];
}

describe("CSI stream rules", () => {
  it("a well-formed stream passes every rule", () => {
    fc.assert(
      fc.property(stream, ({ msgs, per }) => {
        expect(allRules(msgs, per).filter((v) => v !== undefined)).toEqual([]);
      }),
    );
  });

  it("noOverlap catches a tuple that overlaps the previous message's last tuple, naming both messages", () => {
    fc.assert(
      fc.property(multi, fc.integer({ min: 1, max: 10 }), ({ msgs }, k) => {
        const bad = clone(msgs);
        const i = 1 + (k % (bad.length - 1));
        const prev = bad[i - 1]?.blockMetadata;
        const lastOfPrev = prev?.[prev.length - 1];
        const first = bad[i]?.blockMetadata[0];
        if (lastOfPrev === undefined || first === undefined) return;
        first.byteOffset = lastOfPrev.byteOffset + lastOfPrev.sizeBytes - 1;
        expect(noOverlap(bad)).toMatch(new RegExp(`across messages ${i - 1} and ${i}`));
        expect(capacityConstant(bad)).toBeUndefined();
      }),
    );
  });

  it("noOverlap: touching tuples are fine, a repeated offset is not", () => {
    const m = (ts: Tuple[]): StreamMessage[] => [{ blockMetadataType: VARIABLE_LENGTH, volumeCapacityBytes: 100, blockMetadata: ts }];
    expect(noOverlap(m([{ byteOffset: 0, sizeBytes: 10 }, { byteOffset: 10, sizeBytes: 5 }]))).toBeUndefined();
    expect(noOverlap(m([{ byteOffset: 10, sizeBytes: 5 }, { byteOffset: 10, sizeBytes: 5 }]))).toMatch(/starts before the end/);
    expect(noOverlap(m([{ byteOffset: 20, sizeBytes: 5 }, { byteOffset: 10, sizeBytes: 5 }]))).toMatch(/in message 0/);
  });

  it("firstAfterStart: S < end of every tuple; a tuple straddling S is allowed, one ending at S is not", () => {
    fc.assert(
      fc.property(stream, fc.nat(CAPACITY), ({ msgs }, s) => {
        const kept = msgs.map((m) => ({ ...m, blockMetadata: m.blockMetadata.filter((t) => t.byteOffset + t.sizeBytes > s) }));
        expect(firstAfterStart(kept, { startingOffset: s, maxResults: 0 })).toBeUndefined();
        const early = msgs.flatMap((m) => m.blockMetadata).find((t) => t.byteOffset + t.sizeBytes <= s);
        expect(firstAfterStart(msgs, { startingOffset: s, maxResults: 0 }) === undefined).toBe(early === undefined);
      }),
    );
    const one: StreamMessage[] = [{ blockMetadataType: FIXED_LENGTH, volumeCapacityBytes: 100, blockMetadata: [{ byteOffset: 0, sizeBytes: 10 }] }];
    expect(firstAfterStart(one, { startingOffset: 9, maxResults: 0 })).toBeUndefined();
    expect(firstAfterStart(one, { startingOffset: 10, maxResults: 0 })).toMatch(/ends at or before starting_offset 10/);
  });

  it("capacityConstant and typeConstant catch a header that changes in a later message", () => {
    fc.assert(
      fc.property(multi, fc.integer({ min: 1, max: 10 }), ({ msgs }, k) => {
        const i = 1 + (k % (msgs.length - 1));
        const cap = clone(msgs);
        const at = cap[i];
        if (at === undefined) return;
        at.volumeCapacityBytes += GRAIN;
        expect(capacityConstant(cap)).toMatch(new RegExp(`^message ${i} says`));
        expect(typeConstant(cap)).toBeUndefined();
        const typ = clone(msgs);
        const t = typ[i];
        if (t === undefined) return;
        t.blockMetadataType = t.blockMetadataType === FIXED_LENGTH ? VARIABLE_LENGTH : FIXED_LENGTH;
        expect(typeConstant(typ)).toMatch(new RegExp(`^message ${i} has`));
        expect(capacityConstant(typ)).toBeUndefined();
      }),
    );
    expect(typeConstant([{ blockMetadataType: 0, volumeCapacityBytes: 1, blockMetadata: [] }])).toMatch(/neither/);
  });

  it("maxResultsHonoured: one tuple too many in one message fails; 0 means no limit", () => {
    fc.assert(
      fc.property(stream, ({ msgs, per }) => {
        expect(maxResultsHonoured(msgs, { startingOffset: 0, maxResults: per })).toBeUndefined();
        expect(maxResultsHonoured(msgs, { startingOffset: 0, maxResults: 0 })).toBeUndefined();
        const full = msgs.findIndex((m) => m.blockMetadata.length === per);
        if (full < 0) return;
        expect(maxResultsHonoured(msgs, { startingOffset: 0, maxResults: per - 1 || 0 })).toBe(per - 1 === 0 ? undefined : `message ${full} carries ${per} tuples, max_results was ${per - 1}`);
      }),
    );
  });

  it("fixedSizesEqual: one odd size anywhere in a FIXED_LENGTH stream fails; VARIABLE_LENGTH may vary", () => {
    fc.assert(
      fc.property(stream, fc.nat(), ({ msgs }, k) => {
        const bad = clone(msgs);
        const all = bad.flatMap((m) => m.blockMetadata);
        const victim = all[k % Math.max(1, all.length)];
        if (victim === undefined) return;
        victim.sizeBytes += 1;
        const fixed = msgs[0]?.blockMetadataType === FIXED_LENGTH;
        expect(fixedSizesEqual(bad) !== undefined).toBe(fixed && all.length > 1);
      }),
    );
  });

  it("tuplesInVolume: empty tuples, negative offsets and tuples past the capacity fail", () => {
    const m = (t: Tuple): StreamMessage[] => [{ blockMetadataType: VARIABLE_LENGTH, volumeCapacityBytes: 100, blockMetadata: [t] }];
    expect(tuplesInVolume(m({ byteOffset: 90, sizeBytes: 10 }))).toBeUndefined();
    expect(tuplesInVolume(m({ byteOffset: 90, sizeBytes: 11 }))).toMatch(/outside the volume/);
    expect(tuplesInVolume(m({ byteOffset: -1, sizeBytes: 1 }))).toMatch(/outside the volume/);
    expect(tuplesInVolume(m({ byteOffset: 0, sizeBytes: 0 }))).toMatch(/size_bytes ≤ 0/);
  });

  it("resume: the tail after any message boundary, restarted at the next offset, equals the uninterrupted stream; a lost tuple is caught", () => {
    fc.assert(
      fc.property(multi, fc.nat(), fc.boolean(), ({ msgs }, k, straddle) => {
        const n = 1 + (k % (msgs.length - 1));
        const at = resumeOffset(msgs.slice(0, n));
        if (at === undefined) return;
        const tail = clone(msgs.slice(n));
        // A resumed first tuple may start before the offset if it runs past it.
        const first = tail[0]?.blockMetadata[0];
        if (straddle && first !== undefined && first.byteOffset === at && at > 0) {
          first.byteOffset -= 1;
          first.sizeBytes += 1;
        }
        expect(resumeMatches(msgs, tail, at)).toBeUndefined();
        const lossy = clone(tail);
        const victim = lossy[lossy.length - 1];
        if (victim === undefined) return;
        victim.blockMetadata = victim.blockMetadata.slice(0, -1);
        expect(resumeMatches(msgs, lossy, at)).toMatch(/only in the uninterrupted stream/);
      }),
    );
  });

  it("coversDelta: allocated ⊇ delta; a delta range outside the allocation is named", () => {
    fc.assert(
      fc.property(stream, fc.nat(), ({ msgs }, k) => {
        const all = msgs.flatMap((m) => m.blockMetadata);
        const sub = split(
          all.filter((_, i) => i % 2 === k % 2),
          3,
          msgs[0]?.blockMetadataType ?? VARIABLE_LENGTH,
        );
        expect(coversDelta(msgs, sub)).toBeUndefined();
        const dropped = all[k % all.length];
        if (dropped === undefined) return;
        const less = split(
          all.filter((t) => t !== dropped),
          3,
          VARIABLE_LENGTH,
        );
        expect(coversDelta(less, msgs)).toMatch(new RegExp(`\\[${dropped.byteOffset}, `));
      }),
    );
  });

  it("applyDelta: base + the ranges where base and target differ = target; dropping one range leaves a difference", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: CAPACITY, maxLength: CAPACITY }), fc.array(fc.nat(63), { minLength: 1, maxLength: 20 }), (bytes, grains) => {
        const base = Buffer.from(bytes);
        const target = Buffer.from(base);
        for (const g of grains) target.fill((base[g * GRAIN] ?? 0) ^ 0xff, g * GRAIN, (g + 1) * GRAIN);
        const delta = split(tuplesOf(grains, false), 4, VARIABLE_LENGTH);
        expect(applyDelta(base, target, delta).equals(target)).toBe(true);
        const r = ranges(delta);
        const short = split(
          tuplesOf(grains, false).slice(1),
          4,
          VARIABLE_LENGTH,
        );
        if (r.length > 0) expect(applyDelta(base, target, short).equals(target)).toBe(false);
      }),
    );
  });
});
