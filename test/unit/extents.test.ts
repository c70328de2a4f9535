// Properties of src/extents against a naive bitmap model over a small universe.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { alignIn, alignOut, clip, coalesceFlagged, fromBlocks, intersect, isNormal, normalize, subtract, union, type Extent } from "../../src/extents/index.js";

const N = 96;
const rawList = fc.array(fc.record({ offset: fc.integer({ min: 0, max: N - 1 }), length: fc.integer({ min: 0, max: 20 }) }), { maxLength: 8 });
const list = rawList.map((l) => normalize(l.map((e) => ({ offset: e.offset, length: Math.min(e.length, N - e.offset) }))));

function bits(l: readonly Extent[]): boolean[] {
  const b = new Array<boolean>(N + 64).fill(false);
  for (const e of l) for (let i = e.offset; i < e.offset + e.length; i++) b[i] = true;
  return b;
}
function fromBits(b: boolean[]): Extent[] {
  const out: Extent[] = [];
  for (let i = 0; i < b.length; i++) if (b[i]) out.push({ offset: i, length: 1 });
  return normalize(out);
}

describe("extent algebra vs bitmap model", () => {
  it("normalize yields normal form covering the same bytes", () => {
    fc.assert(fc.property(rawList, (l) => {
      const n = normalize(l);
      expect(isNormal(n)).toBe(true);
      expect(bits(n)).toEqual(bits(l));
    }), { numRuns: 500 });
  });
  it("union / intersect / subtract", () => {
    fc.assert(fc.property(list, list, (a, b) => {
      const A = bits(a), B = bits(b);
      for (const [got, want] of [
        [union(a, b), A.map((x, i) => x || (B[i] ?? false))],
        [intersect(a, b), A.map((x, i) => x && (B[i] ?? false))],
        [subtract(a, b), A.map((x, i) => x && !(B[i] ?? false))],
      ] as const) {
        expect(isNormal(got)).toBe(true);
        expect(got).toEqual(fromBits(want));
      }
    }), { numRuns: 1000 });
  });
  it("clip", () => {
    fc.assert(fc.property(list, fc.nat(N), fc.nat(N), (a, s, t) => {
      const want = bits(a).map((x, i) => x && i >= s && i < t);
      expect(clip(a, s, t)).toEqual(fromBits(want));
    }), { numRuns: 500 });
  });
  it("alignOut covers, alignIn is covered, both block aligned", () => {
    fc.assert(fc.property(list, fc.constantFrom(1, 2, 4, 8, 16), (a, bs) => {
      const out = alignOut(a, bs), inn = alignIn(a, bs);
      for (const l of [out, inn]) {
        expect(isNormal(l)).toBe(true);
        for (const e of l) expect(e.offset % bs === 0 && e.length % bs === 0).toBe(true);
      }
      expect(subtract(a, out)).toEqual([]);
      expect(subtract(inn, a)).toEqual([]);
      // alignOut adds at most what is needed: every block it covers touches a.
      for (const e of out) for (let o = e.offset; o < e.offset + e.length; o += bs) expect(intersect(a, [{ offset: o, length: bs }]).length).toBeGreaterThan(0);
    }), { numRuns: 500 });
  });
  it("fromBlocks and coalesceFlagged", () => {
    fc.assert(fc.property(fc.uniqueArray(fc.nat(40)), fc.constantFrom(1, 4), (blocks, bs) => {
      const sorted = [...blocks].sort((x, y) => x - y);
      const ext = fromBlocks(sorted, bs);
      expect(isNormal(ext)).toBe(true);
      expect(ext).toEqual(normalize(sorted.map((b) => ({ offset: b * bs, length: bs }))));
      const flagged = coalesceFlagged(sorted.map((b) => ({ offset: b * bs, length: bs, flag: b % 3 === 0 ? "ZERO" : "DATA" })));
      for (let i = 1; i < flagged.length; i++) {
        const p = flagged[i - 1], c = flagged[i];
        if (p && c && p.offset + p.length === c.offset) expect(p.flag).not.toBe(c.flag);
      }
      expect(flagged.reduce((s, e) => s + e.length, 0)).toBe(sorted.length * bs);
    }), { numRuns: 300 });
  });
});
