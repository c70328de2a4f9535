/**
 * Sizes as a person types them (src/size.ts): a bare number is bytes, a unit
 * is a binary multiple, a size is positive and whole, and a size a LUN would
 * round is refused with the value, the block size and sizes that fit.
 * Every size formatExact spells reads back to the same bytes (fast-check).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SanboxError } from "../../../src/errors.js";
import { formatExact, parseSize, wholeBlocks } from "../../../src/size.js";

function usageMessage(f: () => unknown): string {
  try {
    f();
  } catch (e: unknown) {
    if (e instanceof SanboxError && e.code === "INVALID_ARGUMENT") return e.message;
    throw e;
  }
  throw new Error("no error");
}

describe("parseSize", () => {
  it("reads bytes and binary units", () => {
    expect(parseSize("65536")).toBe(65536);
    expect(parseSize("64K")).toBe(65536);
    expect(parseSize("64KiB")).toBe(65536);
    expect(parseSize("1.5M")).toBe(1536 * 1024);
    expect(parseSize("10G")).toBe(10 * 2 ** 30);
    expect(parseSize("16t")).toBe(16 * 2 ** 40);
  });

  it("a negative or zero size is 'size must be positive', naming the value", () => {
    expect(usageMessage(() => parseSize("-5G"))).toBe("size must be positive: -5G");
    expect(usageMessage(() => parseSize("-5"))).toBe("size must be positive: -5");
    expect(usageMessage(() => parseSize("0"))).toBe("size must be positive: 0");
    expect(usageMessage(() => parseSize("0K"))).toBe("size must be positive: 0K");
  });

  it("refuses what is not a size", () => {
    for (const bad of ["", "G", "10X", "1.3K", "ten", "1e9", "--5G"]) expect(usageMessage(() => parseSize(bad)), bad).toContain(bad);
  });

  it("round trip: every formatExact spelling parses back to its bytes", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 20 }), fc.integer({ min: 0, max: 33 }), (n, shift) => {
        const bytes = n * 2 ** shift;
        fc.pre(Number.isSafeInteger(bytes));
        const text = formatExact(bytes);
        expect(parseSize(text)).toBe(bytes);
        if (/[KMGTPE]$/.test(text)) expect(parseSize(` ${text}iB `)).toBe(bytes);
      }),
    );
  });

  it("round trip: a number with any unit is that many multiples", () => {
    const units = [["", 1], ["K", 2 ** 10], ["M", 2 ** 20], ["G", 2 ** 30], ["T", 2 ** 40]] as const;
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8191 }), fc.constantFrom(...units), fc.constantFrom("", "B", "iB"), (n, [u, mult], suffix) => {
        expect(parseSize(`${n}${u}${u === "" ? "" : suffix}`)).toBe(n * mult);
        expect(usageMessage(() => parseSize(`-${n}${u}`))).toBe(`size must be positive: -${n}${u}`);
      }),
    );
  });
});

describe("wholeBlocks", () => {
  it("passes multiples of the block size", () => {
    expect(wholeBlocks("1M", 2 ** 20, 65536, "the array")).toBe(2 ** 20);
    expect(wholeBlocks("65536", 65536, 65536, "the array")).toBe(65536);
  });

  it("a bare number that is not whole blocks says it is bytes, names the block size and suggests sizes", () => {
    const m = usageMessage(() => wholeBlocks("100", 100, 65536, "the array"));
    expect(m).toBe("size 100 (100 bytes) is not a multiple of the array's block size 64K (65536 bytes); a bare number is bytes: give a unit (100M, 100G) or a multiple, e.g. 64K");
  });

  it("a size with a unit that is not whole blocks suggests the multiples around it", () => {
    expect(usageMessage(() => wholeBlocks("100K", 100 * 1024, 65536, "LUN db"))).toBe("size 100K (102400 bytes) is not a multiple of LUN db's block size 64K (65536 bytes); give a multiple, e.g. 64K or 128K");
  });

  it("property: it refuses exactly the non-multiples, and every suggestion it makes is a multiple", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 30 }), fc.constantFrom(4096, 65536, 2 ** 20), (bytes, bs) => {
        if (bytes % bs === 0) {
          expect(wholeBlocks(String(bytes), bytes, bs, "x")).toBe(bytes);
          return;
        }
        const m = usageMessage(() => wholeBlocks(String(bytes), bytes, bs, "x"));
        const suggested = /e\.g\. (.*)$/.exec(m)?.[1]?.split(" or ") ?? [];
        expect(suggested.length).toBeGreaterThan(0);
        for (const s of suggested) expect(parseSize(s) % bs).toBe(0);
      }),
    );
  });
});
