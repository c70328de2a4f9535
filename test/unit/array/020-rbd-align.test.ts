// The RBD backend's CBT alignment (rbd diff byte extents → object-aligned,
// sorted, coalesced DATA/ZERO extents): a pure function, checked by property.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { alignExtents } from "../../../simulator/array/rbd/rbd-backend.js";

const entry = fc.record({ offset: fc.nat(1 << 20), length: fc.integer({ min: 1, max: 1 << 18 }), exists: fc.boolean() });

describe("alignExtents", () => {
  it("covers every reported byte, aligned to the object size, sorted and disjoint; DATA wins a shared object", () => {
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 30 }), fc.constantFrom(4096, 65536), fc.integer({ min: 1, max: 1 << 21 }), (entries, bs, size) => {
        const out = alignExtents(entries, bs, size);
        let end = -1;
        let lastFlag: string | undefined;
        for (const e of out) {
          expect(e.offset % bs).toBe(0);
          expect(e.length).toBeGreaterThan(0);
          expect(e.offset + e.length <= size).toBe(true);
          expect((e.offset + e.length) % bs === 0 || e.offset + e.length === size).toBe(true);
          expect(e.offset >= end).toBe(true);
          // Coalesced: touching neighbours differ in flag.
          if (e.offset === end) expect(e.flag).not.toBe(lastFlag);
          end = e.offset + e.length;
          lastFlag = e.flag;
        }
        const flagAt = (pos: number): string | undefined => out.find((e) => e.offset <= pos && pos < e.offset + e.length)?.flag;
        for (const x of entries) {
          for (const pos of [x.offset, x.offset + x.length - 1]) {
            if (pos >= size) continue;
            const f = flagAt(pos);
            expect(f).toBeDefined();
            if (x.exists) expect(f).toBe("DATA");
          }
        }
        // Nothing outside the reported objects.
        for (const e of out) {
          const b = e.offset / bs;
          expect(entries.some((x) => Math.floor(x.offset / bs) <= b && b < Math.ceil((x.offset + x.length) / bs))).toBe(true);
        }
      }),
    );
  });

  it("a ZERO object next to a DATA object stays ZERO", () => {
    expect(
      alignExtents(
        [
          { offset: 0, length: 10, exists: true },
          { offset: 65536, length: 65536, exists: false },
        ],
        65536,
        1 << 20,
      ),
    ).toEqual([
      { offset: 0, length: 65536, flag: "DATA" },
      { offset: 65536, length: 65536, flag: "ZERO" },
    ]);
  });
});
