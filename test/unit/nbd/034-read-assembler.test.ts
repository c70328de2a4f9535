/**
 * READ reassembly from structured chunks: any order and split is accepted when it
 * covers the request exactly once; overlaps, gaps and out-of-range chunks are
 * protocol errors. The buffer is allocated uninitialised, so holes must be zeroed
 * and nothing unwritten may ever be returned.
 */
import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { NbdProtocolError } from "../../../src/errors.js";
import { ReadAssembler } from "../../../src/nbd/client-read-assembler.js";

afterEach(() => {
  vi.restoreAllMocks();
});

/** Make the assembler's uninitialised buffer visibly dirty, like reused heap memory. */
function dirtyAllocations(): void {
  const real = Buffer.alloc.bind(Buffer);
  vi.spyOn(Buffer, "allocUnsafe").mockImplementation((n: number) => real(n, 0xee));
}

describe("ReadAssembler", () => {
  it("reassembles any split of the request, in any order, with holes as zeroes", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4096 }),
        fc.array(fc.integer({ min: 1, max: 4095 }), { maxLength: 12 }),
        fc.array(fc.boolean(), { minLength: 13, maxLength: 13 }),
        fc.integer({ min: 0, max: 1e9 }),
        fc.boolean(),
        (length, cutsRaw, holes, seed, streamed) => {
          const cuts = [...new Set(cutsRaw.filter((c) => c < length))].sort((a, b) => a - b);
          const bounds = [0, ...cuts, length];
          const base = 1_000_000;
          const source = Buffer.from(Array.from({ length }, (_, i) => (i * 7 + 1) % 251 || 1));
          const pieces = bounds.slice(0, -1).map((s, i) => ({ s, e: bounds[i + 1] ?? length, hole: holes[i] ?? false }));
          // deterministic shuffle
          const order = pieces.map((p, i) => ({ p, k: (i * 2654435761 + seed) % 4294967296 })).sort((a, b) => a.k - b.k);
          dirtyAllocations();
          const a = new ReadAssembler(base, length);
          vi.restoreAllMocks();
          for (const { p } of order) {
            if (p.hole) a.hole(base + p.s, p.e - p.s);
            else if (!streamed) a.data(base + p.s, source.subarray(p.s, p.e));
            else {
              // As the decoder does: claim from the header, then write the bytes in pieces.
              const t = a.dataTarget(base + p.s, p.e - p.s);
              expect(t.length).toBe(p.e - p.s);
              for (let at = 0; at < t.length; at += 100) source.copy(t, at, p.s + at, Math.min(p.e, p.s + at + 100));
              a.filled();
            }
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

  it("validates a data chunk's range before handing out a target", () => {
    const a = new ReadAssembler(1000, 100);
    expect(() => a.dataTarget(1090, 20)).toThrow(/outside the READ request/);
    expect(() => a.dataTarget(990, 20)).toThrow(/outside the READ request/);
    const t = a.dataTarget(1000, 50);
    expect(t.length).toBe(50);
    a.filled();
    expect(() => a.dataTarget(1040, 20)).toThrow(/overlaps/);
  });

  it("never returns the buffer while a claimed data target is unwritten", () => {
    dirtyAllocations();
    const a = new ReadAssembler(0, 64);
    a.dataTarget(0, 64);
    expect(() => a.finish()).toThrow(NbdProtocolError);
    a.filled();
    expect(() => a.filled()).toThrow(/without a data target/);
  });

  it("zero-fills holes over old heap contents", () => {
    dirtyAllocations();
    const a = new ReadAssembler(0, 4096);
    a.hole(0, 1000);
    a.data(1000, Buffer.alloc(96, 1));
    a.hole(1096, 3000);
    const out = a.finish();
    expect(out.subarray(0, 1000).every((x) => x === 0)).toBe(true);
    expect(out.subarray(1096).every((x) => x === 0)).toBe(true);
  });
});
