// coalesceReads against a byte model: every requested byte is served from exactly one read at the
// right place, reads respect maxRead and maxGap, and the bytes read beyond the pieces are gaps only.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { coalesceReads } from "../../src/extents/index.js";

interface Piece {
  srcOffset: number;
  length: number;
  /** Which input piece this came from, and where inside it (to check splits). */
  origin: number;
  skip: number;
}

const pieces = fc.array(fc.record({ srcOffset: fc.integer({ min: 0, max: 400 }), length: fc.integer({ min: 0, max: 60 }) }), { maxLength: 30 });
const limits = fc.record({ maxRead: fc.integer({ min: 1, max: 100 }), maxGap: fc.integer({ min: 0, max: 40 }) });

describe("coalesceReads", () => {
  it("covers exactly the requested bytes, within the limits, in order", () => {
    fc.assert(
      fc.property(pieces, limits, (raw, lim) => {
        const input: Piece[] = raw.map((p, i) => ({ ...p, origin: i, skip: 0 }));
        const reads = coalesceReads(input, lim, (p, skip, length) => ({ srcOffset: p.srcOffset + skip, length, origin: p.origin, skip: p.skip + skip }));
        // Model: each input piece's bytes, as (origin, byte index) -> source offset.
        const want = new Map<string, number>();
        for (const p of input) for (let k = 0; k < p.length; k++) want.set(`${p.origin}:${k}`, p.srcOffset + k);
        const got = new Map<string, number>();
        let lastOrigin = -1;
        let lastSkip = -1;
        for (const r of reads) {
          expect(r.length).toBeGreaterThan(0);
          expect(r.length).toBeLessThanOrEqual(lim.maxRead);
          let prevEnd: number | undefined;
          let piecesBytes = 0;
          for (const { piece, at } of r.pieces) {
            // The piece sits inside the read at `at`, and source order inside a read is ascending.
            expect(r.offset + at).toBe(piece.srcOffset);
            expect(at + piece.length).toBeLessThanOrEqual(r.length);
            if (prevEnd !== undefined) {
              expect(piece.srcOffset).toBeGreaterThanOrEqual(prevEnd);
              expect(piece.srcOffset - prevEnd).toBeLessThanOrEqual(lim.maxGap);
            }
            prevEnd = piece.srcOffset + piece.length;
            piecesBytes += piece.length;
            // Input order is kept.
            expect(piece.origin > lastOrigin || (piece.origin === lastOrigin && piece.skip > lastSkip)).toBe(true);
            lastOrigin = piece.origin;
            lastSkip = piece.skip;
            for (let k = 0; k < piece.length; k++) {
              const key = `${piece.origin}:${piece.skip + k}`;
              expect(got.has(key)).toBe(false);
              got.set(key, piece.srcOffset + k);
            }
          }
          // A read starts at its first piece and ends at its last: anything else read is a gap.
          expect(r.pieces[0]?.at).toBe(0);
          expect(prevEnd).toBe(r.offset + r.length);
          expect(r.length - piecesBytes).toBeLessThanOrEqual(lim.maxGap * Math.max(0, r.pieces.length - 1));
        }
        expect(got).toEqual(want);
      }),
      { numRuns: 500 },
    );
  });

  it("merges adjacent pieces and splits long ones", () => {
    const split = (p: { srcOffset: number; length: number }, skip: number, length: number) => ({ srcOffset: p.srcOffset + skip, length });
    const r = coalesceReads([{ srcOffset: 0, length: 4 }, { srcOffset: 4, length: 4 }, { srcOffset: 10, length: 2 }, { srcOffset: 100, length: 25 }], { maxRead: 16, maxGap: 2 }, split);
    expect(r.map((x) => [x.offset, x.length, x.pieces.length])).toEqual([
      [0, 12, 3],
      [100, 16, 1],
      [116, 9, 1],
    ]);
  });
});
