// Extent-map helpers against a byte-by-byte model.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fileRangesOnLun, holes, mappedRanges } from "../../../src/datastore/extent-map.js";
import type { FileExtent } from "../../../src/datastore/format.js";
import { normalize, type Extent } from "../../../src/extents/index.js";

const B = 4;
/** A random map: file blocks 0..15 mapped to distinct LUN blocks 0..31 (coalesced like extentMap). */
const mapArb = fc.uniqueArray(fc.integer({ min: 0, max: 31 }), { minLength: 16, maxLength: 16 }).chain((lunBlocks) =>
  fc.array(fc.boolean(), { minLength: 16, maxLength: 16 }).map((used) => {
    const out: FileExtent[] = [];
    used.forEach((u, fb) => {
      if (u) out.push({ fileOffset: fb * B, lunOffset: (lunBlocks[fb] as number) * B, length: B });
    });
    return out;
  }),
);
const lunArb = fc.array(fc.record({ offset: fc.integer({ min: 0, max: 127 }), length: fc.integer({ min: 0, max: 20 }) }), { maxLength: 6 }).map((l) => normalize(l));

function bytes(l: readonly Extent[]): Set<number> {
  const s = new Set<number>();
  for (const e of l) for (let i = e.offset; i < e.offset + e.length; i++) s.add(i);
  return s;
}

describe("extent map helpers", () => {
  it("fileRangesOnLun = file bytes whose LUN byte is in the set", () => {
    fc.assert(
      fc.property(mapArb, lunArb, (map, lun) => {
        const want = new Set<number>();
        const lunBytes = bytes(lun);
        for (const x of map) for (let i = 0; i < x.length; i++) if (lunBytes.has(x.lunOffset + i)) want.add(x.fileOffset + i);
        expect(bytes(fileRangesOnLun(map, lun))).toEqual(want);
      }),
      { numRuns: 300 },
    );
  });
  it("mapped ranges and holes partition the file", () => {
    fc.assert(
      fc.property(mapArb, (map) => {
        const size = 16 * B;
        const m = bytes(mappedRanges(map));
        const h = bytes(holes(map, size));
        for (let i = 0; i < size; i++) expect(m.has(i) !== h.has(i)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});
