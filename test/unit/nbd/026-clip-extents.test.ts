/**
 * clipExtents: backend extents → the BLOCK_STATUS descriptors for one request.
 * Tables for the edge cases, then properties over random contiguous extent lists.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { StatusExtent } from "../../../src/nbd/backend.js";
import { NBD_MAX_EXTENTS } from "../../../src/nbd/constants.js";
import { clipExtents } from "../../../src/nbd/server-commands.js";

const e = (offset: number, length: number, flag: number): StatusExtent => ({ offset, length, flag });

type Row = [string, StatusExtent[], number, number, boolean, { length: number; flag: number }[]];

const table: Row[] = [
  ["one extent covering the request exactly", [e(0, 100, 3)], 0, 100, false, [{ length: 100, flag: 3 }]],
  ["an extent running past the end is clipped", [e(0, 1000, 0)], 10, 100, false, [{ length: 100, flag: 0 }]],
  ["an extent starting before the offset is clipped", [e(0, 100, 1), e(100, 100, 0)], 50, 100, false, [{ length: 50, flag: 1 }, { length: 50, flag: 0 }]],
  ["extents wholly before the offset are skipped", [e(0, 10, 1), e(10, 10, 0), e(20, 80, 3)], 25, 10, false, [{ length: 10, flag: 3 }]],
  ["adjacent extents with equal flags merge", [e(0, 10, 3), e(10, 10, 3), e(20, 10, 0)], 0, 30, false, [{ length: 20, flag: 3 }, { length: 10, flag: 0 }]],
  ["extents after the end are ignored", [e(0, 10, 0), e(10, 10, 3), e(20, 10, 0)], 0, 15, false, [{ length: 10, flag: 0 }, { length: 5, flag: 3 }]],
  ["a short answer stays short", [e(0, 10, 0)], 0, 100, false, [{ length: 10, flag: 0 }]],
  ["a gap ends the answer", [e(0, 10, 0), e(20, 10, 3)], 0, 30, false, [{ length: 10, flag: 0 }]],
  ["an answer starting after the offset is empty", [e(10, 10, 0)], 0, 30, false, []],
  ["no extents, no answer", [], 0, 30, false, []],
  ["zero-length extents are skipped", [e(0, 0, 1), e(0, 10, 0)], 0, 10, false, [{ length: 10, flag: 0 }]],
  ["REQ_ONE keeps only the first", [e(0, 10, 0), e(10, 10, 3)], 0, 20, true, [{ length: 10, flag: 0 }]],
  ["REQ_ONE clips the first to the request", [e(0, 100, 3)], 20, 10, true, [{ length: 10, flag: 3 }]],
  ["REQ_ONE does not merge past the first backend extent", [e(0, 10, 3), e(10, 10, 3)], 0, 20, true, [{ length: 10, flag: 3 }]],
];

describe("clipExtents table", () => {
  it.each(table)("%s", (_name, extents, offset, length, reqOne, want) => {
    expect(clipExtents(extents, offset, length, reqOne)).toEqual(want);
  });

  it("caps the number of descriptors", () => {
    const many: StatusExtent[] = [];
    for (let i = 0; i < NBD_MAX_EXTENTS + 10; i++) many.push(e(i, 1, i & 1));
    expect(clipExtents(many, 0, many.length, false)).toHaveLength(NBD_MAX_EXTENTS);
  });
});

/** A contiguous extent list starting at or before `offset`, as a backend returns. */
const backendAnswer = fc
  .record({
    start: fc.nat({ max: 1000 }),
    lengths: fc.array(fc.record({ length: fc.integer({ min: 1, max: 500 }), flag: fc.integer({ min: 0, max: 3 }) }), { minLength: 1, maxLength: 30 }),
    into: fc.nat({ max: 400 }),
    length: fc.integer({ min: 1, max: 5000 }),
    reqOne: fc.boolean(),
  })
  .map(({ start, lengths, into, length, reqOne }) => {
    const extents: StatusExtent[] = [];
    let pos = start;
    for (const l of lengths) {
      extents.push(e(pos, l.length, l.flag));
      pos += l.length;
    }
    const offset = start + Math.min(into, pos - start - 1);
    return { extents, offset, length, reqOne, end: pos };
  });

describe("clipExtents properties", () => {
  it("sums to at most the request, and exactly to what the backend covered", () => {
    fc.assert(
      fc.property(backendAnswer, ({ extents, offset, length, reqOne, end }) => {
        const out = clipExtents(extents, offset, length, reqOne);
        const sum = out.reduce((a, x) => a + x.length, 0);
        expect(sum).toBeLessThanOrEqual(length);
        expect(sum).toBeGreaterThan(0);
        if (!reqOne) expect(sum).toBe(Math.min(length, end - offset));
      }),
    );
  });

  it("is contiguous from the offset: every descriptor matches the backend's flags at its position", () => {
    fc.assert(
      fc.property(backendAnswer, ({ extents, offset, length, reqOne }) => {
        const out = clipExtents(extents, offset, length, reqOne);
        let pos = offset;
        for (const d of out) {
          expect(d.length).toBeGreaterThan(0);
          for (const probe of [pos, pos + d.length - 1]) {
            const src = extents.find((x) => x.offset <= probe && probe < x.offset + x.length);
            expect(src?.flag).toBe(d.flag);
          }
          pos += d.length;
        }
      }),
    );
  });

  it("never puts two descriptors with equal flags side by side", () => {
    fc.assert(
      fc.property(backendAnswer, ({ extents, offset, length, reqOne }) => {
        const out = clipExtents(extents, offset, length, reqOne);
        for (let i = 1; i < out.length; i++) expect(out[i]?.flag).not.toBe(out[i - 1]?.flag);
      }),
    );
  });

  it("REQ_ONE gives exactly one descriptor", () => {
    fc.assert(
      fc.property(backendAnswer, ({ extents, offset, length }) => {
        expect(clipExtents(extents, offset, length, true)).toHaveLength(1);
      }),
    );
  });
});
