/**
 * The revert plan against a brute-force byte model: two snapshots of a LUN (A
 * and B = A with random changes), a file mapped differently in each (grown,
 * shrunk, trimmed, reallocated, unaligned sizes), and CBT = the changed bytes
 * plus random over-reporting. Applying the plan, reading from B, to an image
 * holding the file at A must give exactly the file at B; and the plan never
 * touches a byte whose mapping and LUN content both stayed put.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { FileExtent } from "../../../src/datastore/format.js";
import { normalize, type Extent } from "../../../src/extents/index.js";
import { mappingDifference, planRevert, type RevertPlan } from "../../../plugin/backup/revert-plan.js";

const BLOCK = 4;
const LUN_BLOCKS = 24;
const LUN_SIZE = BLOCK * LUN_BLOCKS;

interface ModelFile {
  map: FileExtent[];
  size: number;
}

function contentOf(f: ModelFile, lun: Uint8Array): Uint8Array {
  const out = new Uint8Array(f.size);
  for (const m of f.map) for (let i = 0; i < m.length && m.fileOffset + i < f.size; i++) out[m.fileOffset + i] = lun[m.lunOffset + i] ?? 0;
  return out;
}

function lunOf(f: ModelFile, x: number): number {
  for (const m of f.map) if (x >= m.fileOffset && x < m.fileOffset + m.length) return m.lunOffset + x - m.fileOffset;
  return -1;
}

function apply(image: Uint8Array, plan: RevertPlan, lun: Uint8Array): Uint8Array {
  const out = new Uint8Array(plan.size);
  out.set(image.subarray(0, Math.min(image.length, plan.size)));
  for (const z of plan.zeros) out.fill(0, z.offset, z.offset + z.length);
  for (const c of plan.copies) out.set(lun.subarray(c.srcOffset, c.srcOffset + c.length), c.dstOffset);
  return out;
}

/** A file of up to 10 blocks, each a hole or a distinct LUN block; size cut anywhere in the last block. */
const fileArb = fc
  .record({
    slots: fc.array(fc.option(fc.integer({ min: 0, max: LUN_BLOCKS - 1 }), { nil: undefined, freq: 3 }), { maxLength: 10 }),
    cut: fc.integer({ min: 0, max: BLOCK - 1 }),
  })
  .map(({ slots, cut }): ModelFile => {
    const used = new Set<number>();
    const map: FileExtent[] = [];
    slots.forEach((s, i) => {
      if (s === undefined || used.has(s)) return;
      used.add(s);
      map.push({ fileOffset: i * BLOCK, lunOffset: s * BLOCK, length: BLOCK });
    });
    const size = Math.max(0, slots.length * BLOCK - cut);
    return { size, map: map.filter((m) => m.fileOffset < size).map((m) => ({ ...m, length: Math.min(m.length, size - m.fileOffset) })) };
  });

const scenario = fc.record({
  a: fileArb,
  b: fileArb,
  sameLayout: fc.boolean(),
  lunA: fc.uint8Array({ minLength: LUN_SIZE, maxLength: LUN_SIZE }),
  writes: fc.array(fc.record({ at: fc.integer({ min: 0, max: LUN_SIZE - 1 }), v: fc.integer({ min: 0, max: 255 }) }), { maxLength: 20 }),
  extra: fc.array(fc.record({ at: fc.integer({ min: 0, max: LUN_SIZE - 1 }), len: fc.integer({ min: 1, max: 8 }) }), { maxLength: 3 }),
});

describe("planRevert", () => {
  it("turns the file at A into the file at B (brute-force byte model)", () => {
    fc.assert(
      fc.property(scenario, (s) => {
        const b = s.sameLayout ? s.a : s.b;
        const lunB = Uint8Array.from(s.lunA);
        const changed: Extent[] = [];
        for (const w of s.writes) {
          lunB[w.at] = w.v;
          changed.push({ offset: w.at, length: 1 });
        }
        for (const e of s.extra) changed.push({ offset: e.at, length: Math.min(e.len, LUN_SIZE - e.at) });
        const plan = planRevert(s.a, b, normalize(changed));
        const image = contentOf(s.a, s.lunA);
        expect(Buffer.from(apply(image, plan, lunB))).toEqual(Buffer.from(contentOf(b, lunB)));
        // Minimal where it matters: a byte with the same mapping and no reported change is not touched.
        const changedSet = new Set<number>();
        for (const c of changed) for (let i = 0; i < c.length; i++) changedSet.add(c.offset + i);
        for (const t of plan.touched) {
          for (let x = t.offset; x < t.offset + t.length; x++) {
            if (x >= Math.min(s.a.size, b.size)) continue;
            const la = lunOf(s.a, x);
            const lb = lunOf(b, x);
            const reason = la !== lb || (la >= 0 && changedSet.has(la));
            expect(reason, `byte ${x} touched without reason`).toBe(true);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("covers grown, shrunk, trimmed and reallocated files", () => {
    const a: ModelFile = { size: 16, map: [{ fileOffset: 0, lunOffset: 0, length: 8 }, { fileOffset: 8, lunOffset: 40, length: 8 }] };
    // Shrunk to 12 with block 1 trimmed: the trimmed block becomes a hole.
    const shrunk = planRevert(a, { size: 12, map: [{ fileOffset: 0, lunOffset: 0, length: 4 }, { fileOffset: 8, lunOffset: 40, length: 4 }] }, []);
    expect(shrunk.size).toBe(12);
    expect(shrunk.zeros).toEqual([{ offset: 4, length: 4 }]);
    expect(shrunk.copies).toEqual([]);
    // Grown to 24 with the tail reallocated and new data: the growth is copied.
    const grown = planRevert(a, { size: 24, map: [{ fileOffset: 0, lunOffset: 0, length: 8 }, { fileOffset: 8, lunOffset: 60, length: 12 }] }, []);
    expect(grown.copies).toEqual([{ srcOffset: 60, dstOffset: 8, length: 12 }]);
    expect(grown.zeros).toEqual([{ offset: 20, length: 4 }]);
    // Same layout, a LUN change under block 0 only.
    const inPlace = planRevert(a, a, [{ offset: 2, length: 1 }]);
    expect(inPlace.copies).toEqual([{ srcOffset: 2, dstOffset: 2, length: 1 }]);
    // The full backup is the plan from the empty file.
    const full = planRevert({ size: 0, map: [] }, a, []);
    expect(full.copies).toEqual([{ srcOffset: 0, dstOffset: 0, length: 8 }, { srcOffset: 40, dstOffset: 8, length: 8 }]);
  });

  it("mappingDifference finds remaps and holes, not equal mappings", () => {
    const a: FileExtent[] = [{ fileOffset: 0, lunOffset: 100, length: 8 }];
    const b: FileExtent[] = [{ fileOffset: 0, lunOffset: 100, length: 4 }, { fileOffset: 4, lunOffset: 200, length: 4 }];
    expect(mappingDifference(a, b, 12)).toEqual([{ offset: 4, length: 4 }]);
    expect(mappingDifference(a, [], 8)).toEqual([{ offset: 0, length: 8 }]);
  });
});
