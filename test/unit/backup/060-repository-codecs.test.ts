/**
 * The three binary formats of the v2 repository (pack trailer, index file,
 * disk map) against a reference model: every encoding decodes to the model,
 * and cutting or flipping any byte is refused with CORRUPT, never mis-parsed.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeDiskMap, DiskMap, encodeDiskMap } from "../../../plugin/backup/repository/disk-map.js";
import { decodeIndex, encodeIndex, type IndexEntry } from "../../../plugin/backup/repository/index-format.js";
import { decodePackFile, encodePackHeader, encodePackTrailer, FLAG_ZSTD, type PackEntry } from "../../../plugin/backup/repository/pack-format.js";

const hashArb = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((a) => Buffer.from(a));

/** A blob: its stored bytes, and whether it is a zstd frame (raw blobs have stored = raw length). */
const blobArb = fc.record({ data: fc.uint8Array({ minLength: 1, maxLength: 64 }), zstd: fc.boolean(), raw: fc.integer({ min: 1, max: 1 << 20 }), hash: hashArb });

function buildPack(blobs: { data: Uint8Array; zstd: boolean; raw: number; hash: Buffer }[]): { file: Buffer; entries: PackEntry[] } {
  const parts: Buffer[] = [encodePackHeader()];
  const entries: PackEntry[] = [];
  let at = 16;
  for (const b of blobs) {
    const flags = b.zstd ? FLAG_ZSTD : 0;
    entries.push({ hash: b.hash, offset: at, stored: b.data.length, raw: b.zstd ? b.raw : b.data.length, flags });
    parts.push(Buffer.from(b.data));
    at += b.data.length;
  }
  parts.push(encodePackTrailer(entries));
  return { file: Buffer.concat(parts), entries };
}

/** Every way a decoder can answer a damaged file: CORRUPT, or (when the damage hit only blob bytes) the original entries. */
function refusedOrSame<T>(decode: () => T, same: (v: T) => boolean): boolean {
  try {
    return same(decode());
  } catch (e: unknown) {
    return (e as { code?: string }).code === "CORRUPT";
  }
}

describe("repository codecs", () => {
  it("pack: round trip; any truncation refused; any flipped trailer byte refused", () => {
    fc.assert(
      fc.property(fc.array(blobArb, { maxLength: 8 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (blobs, pick, xor) => {
        const { file, entries } = buildPack(blobs);
        expect(decodePackFile(file, "p")).toEqual(entries);
        const cut = pick % file.length;
        expect(() => decodePackFile(file.subarray(0, cut), "p")).toThrow(expect.objectContaining({ code: "CORRUPT" }) as Error);
        const at = pick % file.length;
        const bad = Buffer.from(file);
        bad[at] = (bad[at] as number) ^ xor;
        const blobEnd = entries.reduce((n, e) => n + e.stored, 16);
        if (at >= blobEnd || at < 16) expect(() => decodePackFile(bad, "p")).toThrow(expect.objectContaining({ code: "CORRUPT" }) as Error);
        // A flip inside blob bytes is the chunk hash's job (chunk-store); the trailer still parses to the same entries.
        else expect(refusedOrSame(() => decodePackFile(bad, "p"), (v) => JSON.stringify(v) === JSON.stringify(entries))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("index: round trip; any truncation or flipped byte refused", () => {
    const entryArb: fc.Arbitrary<IndexEntry> = fc.record({
      hash: hashArb,
      pack: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => Buffer.from(a)),
      offset: fc.integer({ min: 16, max: Number.MAX_SAFE_INTEGER }),
      stored: fc.integer({ min: 1, max: 1 << 20 }),
      raw: fc.integer({ min: 1, max: 1 << 20 }),
      flags: fc.constant(FLAG_ZSTD),
    });
    fc.assert(
      fc.property(fc.array(entryArb, { maxLength: 10 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (entries, pick, xor) => {
        const b = encodeIndex(entries);
        expect(decodeIndex(b, "i")).toEqual(entries);
        expect(() => decodeIndex(b.subarray(0, pick % b.length), "i")).toThrow(expect.objectContaining({ code: "CORRUPT" }) as Error);
        const bad = Buffer.from(b);
        const at = pick % b.length;
        bad[at] = (bad[at] as number) ^ xor;
        expect(() => decodeIndex(bad, "i")).toThrow(expect.objectContaining({ code: "CORRUPT" }) as Error);
      }),
      { numRuns: 300 },
    );
  });

  it("disk map: round trip against a sorted model; lookups and allocation agree with it; damage refused", () => {
    const CS = 4096;
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 64 * CS }),
        fc.uniqueArray(fc.nat(63), { maxLength: 20 }),
        fc.array(hashArb, { minLength: 20, maxLength: 20 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (size, nums, hashes, pick, xor) => {
          const limit = Math.ceil(size / CS);
          const model = new Map<number, string>();
          nums.filter((n) => n < limit).forEach((n, i) => model.set(n, (hashes[i] as Buffer).toString("hex")));
          const sorted = [...model].sort((a, b) => a[0] - b[0]);
          const m = DiskMap.fromEntries(size, CS, sorted);
          const back = decodeDiskMap(encodeDiskMap(m), "m");
          expect(back.size).toBe(size);
          expect(back.count).toBe(sorted.length);
          for (let n = 0; n < limit; n++) expect(back.hashOf(n)).toBe(model.get(n) ?? null);
          // Allocation: exactly the listed chunks, clipped to the size.
          const bytes = new Uint8Array(size);
          for (const e of back.allocated()) bytes.fill(1, e.offset, e.offset + e.length);
          for (let n = 0; n < limit; n++) expect(bytes[n * CS]).toBe(model.has(n) ? 1 : 0);
          const b = encodeDiskMap(m);
          expect(() => decodeDiskMap(b.subarray(0, pick % b.length), "m")).toThrow(expect.objectContaining({ code: "CORRUPT" }) as Error);
          const bad = Buffer.from(b);
          const at = pick % b.length;
          bad[at] = (bad[at] as number) ^ xor;
          expect(() => decodeDiskMap(bad, "m")).toThrow(expect.objectContaining({ code: "CORRUPT" }) as Error);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("disk map: unsorted or out-of-range chunk numbers are refused even with a valid checksum", () => {
    const h = "ab".repeat(32);
    const unsorted = encodeDiskMap(DiskMap.fromEntries(10 * 4096, 4096, [[3, h], [2, h]]));
    expect(() => decodeDiskMap(unsorted, "m")).toThrow(/strictly ascending/);
    const past = encodeDiskMap(DiskMap.fromEntries(2 * 4096, 4096, [[5, h]]));
    expect(() => decodeDiskMap(past, "m")).toThrow(/past the disk/);
  });
});
