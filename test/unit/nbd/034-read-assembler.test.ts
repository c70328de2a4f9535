/**
 * READ reassembly from structured chunks: any order and split is accepted when it
 * covers the request exactly once; overlaps, gaps and out-of-range chunks are
 * protocol errors.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NbdProtocolError } from "../../../src/errors.js";
import { ReadAssembler } from "../../../src/nbd/client-read-assembler.js";

describe("ReadAssembler", () => {
  it("reassembles any split of the request, in any order, with holes as zeroes", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4096 }),
        fc.array(fc.integer({ min: 1, max: 4095 }), { maxLength: 12 }),
        fc.array(fc.boolean(), { minLength: 13, maxLength: 13 }),
        fc.integer({ min: 0, max: 1e9 }),
        (length, cutsRaw, holes, seed) => {
          const cuts = [...new Set(cutsRaw.filter((c) => c < length))].sort((a, b) => a - b);
          const bounds = [0, ...cuts, length];
          const base = 1_000_000;
          const source = Buffer.from(Array.from({ length }, (_, i) => (i * 7 + 1) % 251 || 1));
          const pieces = bounds.slice(0, -1).map((s, i) => ({ s, e: bounds[i + 1] ?? length, hole: holes[i] ?? false }));
          // deterministic shuffle
          const order = pieces.map((p, i) => ({ p, k: (i * 2654435761 + seed) % 4294967296 })).sort((a, b) => a.k - b.k);
          const a = new ReadAssembler(base, length);
          for (const { p } of order) {
            if (p.hole) a.hole(base + p.s, p.e - p.s);
            else a.data(base + p.s, source.subarray(p.s, p.e));
          }
          const out = a.finish();
          for (const p of pieces) {
            const want = p.hole ? Buffer.alloc(p.e - p.s) : source.subarray(p.s, p.e);
            expect(out.subarray(p.s, p.e).equals(want)).toBe(true);
          }
        },
      ),
    );
  });

  it("rejects overlaps, gaps, out-of-range and split DF reads", () => {
    const overlap = new ReadAssembler(0, 100);
    overlap.data(0, Buffer.alloc(60));
    expect(() => overlap.hole(50, 50)).toThrow(/overlaps/);

    const inside = new ReadAssembler(0, 100);
    inside.data(20, Buffer.alloc(10));
    expect(() => inside.data(0, Buffer.alloc(40))).toThrow(/overlaps/);

    const gap = new ReadAssembler(0, 100);
    gap.data(0, Buffer.alloc(40));
    gap.data(60, Buffer.alloc(40));
    expect(() => gap.finish()).toThrow(/\[40, …\) uncovered/);

    expect(() => new ReadAssembler(100, 10).data(95, Buffer.alloc(10))).toThrow(NbdProtocolError);
    expect(() => new ReadAssembler(100, 10).hole(105, 10)).toThrow(/outside the READ request/);
    expect(() => new ReadAssembler(0, 10).hole(0, 0)).toThrow(/zero-length/);

    const df = new ReadAssembler(0, 10, true);
    df.data(0, Buffer.alloc(5));
    expect(() => df.data(5, Buffer.alloc(5))).toThrow(/DF/);
  });
});
