/**
 * The chunk codec's contract (plugin/backup/repository/chunk-codec.ts), for
 * both implementations: zero chunks are null, the hash is the raw bytes'
 * SHA-256, the stored form unpacks to the raw bytes, a damaged stored form
 * never unpacks, and the worker codec's batching hands every caller its own
 * result. Also the pack-handle cache's close rules.
 */
import { createHash } from "node:crypto";
import { open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { CorruptError } from "../../../src/errors.js";
import { inlineCodec, workerCodec, type ChunkCodec } from "../../../plugin/backup/repository/chunk-codec.js";
import { FLAG_ZSTD } from "../../../plugin/backup/repository/pack-format.js";
import { PackHandles } from "../../../plugin/backup/repository/pack-handles.js";
import { tempDir } from "../../support/tools.js";

const CS = 16 * 1024;

/** A chunk of one of the kinds the store meets: zeros, random bytes, text, a mix. */
const chunkArb = fc.oneof(
  fc.constant(Buffer.alloc(CS)),
  fc.uint8Array({ minLength: CS, maxLength: CS }).map((u) => Buffer.from(u)),
  fc.string({ minLength: 1, maxLength: 40 }).map((t) => Buffer.from(t.repeat(Math.ceil(CS / t.length)).slice(0, CS).padEnd(CS, "x"))),
  fc.tuple(fc.nat(CS - 1), fc.integer({ min: 1, max: 255 })).map(([at, b]) => {
    const buf = Buffer.alloc(CS);
    buf[at] = b;
    return buf;
  }),
);

/** A copy that owns its memory, as the image builder hands over (the worker codec moves it). */
function owned(b: Buffer): Buffer {
  const out = Buffer.allocUnsafeSlow(b.length);
  b.copy(out);
  return out;
}

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

describe("chunk codec", () => {
  const codecs: ChunkCodec[] = [inlineCodec(), workerCodec(2)];
  afterAll(async () => {
    for (const c of codecs) await c.close();
  });

  for (const codec of codecs) {
    it(`${codec.name}: zero → null; else the SHA-256 of the raw bytes, and the stored form unpacks to them`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(chunkArb, { minLength: 1, maxLength: 24 }), async (chunks) => {
          // All at once, so the worker codec batches them.
          const packed = await Promise.all(chunks.map((c) => codec.pack(owned(c))));
          for (const [k, c] of chunks.entries()) {
            const p = packed[k];
            if (c.every((x) => x === 0)) {
              expect(p).toBeNull();
              continue;
            }
            if (p === null || p === undefined) throw new Error("a non-zero chunk packed to null");
            expect(p.hash).toBe(sha(c));
            if ((p.flags & FLAG_ZSTD) === 0) expect(p.stored.equals(c)).toBe(true);
            else expect(p.stored.length).toBeLessThan(c.length - (c.length >> 6) + 1);
            const raw = await codec.unpack(p.stored, { hash: p.hash, raw: CS, flags: p.flags });
            expect(raw.equals(c)).toBe(true);
          }
        }),
        { numRuns: 40 },
      );
    });

    it(`${codec.name}: a flipped byte, a wrong length or a wrong hash never unpacks`, async () => {
      await fc.assert(
        fc.asyncProperty(chunkArb.filter((c) => c.some((x) => x !== 0)), fc.nat(), async (c, where) => {
          const p = await codec.pack(owned(c));
          if (p === null) throw new Error("unreachable");
          const bad = Buffer.from(p.stored);
          const at = where % bad.length;
          bad[at] = (bad[at] ?? 0) ^ 0x40;
          // Some header bits do not change what a frame decodes to (a larger
          // window, say): those give back exactly the original bytes, which the
          // hash proves. Anything else is a CorruptError.
          const got = await codec.unpack(bad, { hash: p.hash, raw: CS, flags: p.flags }).catch((e: unknown) => e);
          if (Buffer.isBuffer(got)) expect(got.equals(c)).toBe(true);
          else expect(got).toBeInstanceOf(CorruptError);
          await expect(codec.unpack(p.stored, { hash: p.hash, raw: CS / 2, flags: p.flags })).rejects.toThrow(/holds/);
          await expect(codec.unpack(p.stored, { hash: sha(Buffer.from("other")), raw: CS, flags: p.flags })).rejects.toThrow(/hashes to/);
        }),
        // Shrinking 16 KiB arrays takes minutes; the first counterexample is enough.
        { numRuns: 30, endOnFailure: true },
      );
    });
  }

  // Every byte position, three flips each, and every truncation of a frame
  // from each compressible kind: each must reject, or (where the flip is in a
  // bit that does not change the decoded bytes) give back exactly the
  // original, and none may run unbounded.
  it("inline: every single-byte flip and every truncation of a zstd frame rejects or is harmless, and returns", async () => {
    const codec = codecs[0];
    if (codec === undefined) throw new Error("unreachable");
    const kinds = [Buffer.from("abcdefgh".repeat(CS / 8)), Buffer.alloc(CS, 7), Buffer.from(Array.from({ length: CS }, (_, i) => (i * 7) % 13))];
    let rejected = 0;
    for (const c of kinds) {
      const p = await codec.pack(owned(c));
      if (p === null || (p.flags & FLAG_ZSTD) === 0) throw new Error("expected a zstd chunk");
      const expectRaw = { hash: p.hash, raw: CS, flags: p.flags };
      const damaged: Buffer[] = [];
      for (let at = 0; at < p.stored.length; at++)
        for (const mask of [0x01, 0x40, 0xff]) {
          const bad = Buffer.from(p.stored);
          bad[at] = (bad[at] ?? 0) ^ mask;
          damaged.push(bad);
        }
      for (let n = 0; n < p.stored.length; n++) damaged.push(p.stored.subarray(0, n));
      damaged.push(Buffer.concat([p.stored, p.stored]), Buffer.concat([p.stored, Buffer.alloc(3)]));
      for (const bad of damaged) {
        try {
          const raw = await codec.unpack(bad, expectRaw);
          expect(raw.equals(c)).toBe(true);
        } catch (e: unknown) {
          expect(e).toBeInstanceOf(CorruptError);
          rejected++;
        }
      }
    }
    expect(rejected).toBeGreaterThan(0);
  });

  it("both codecs store the same bytes for the same chunk (one repository, either codec)", async () => {
    await fc.assert(
      fc.asyncProperty(chunkArb, async (c) => {
        const [a, b] = await Promise.all(codecs.map((k) => k.pack(owned(c))));
        expect(a?.hash).toBe(b?.hash);
        expect(a?.flags).toBe(b?.flags);
        expect(a?.stored.equals(b?.stored ?? Buffer.alloc(0)) ?? b === null).toBe(true);
      }),
      { numRuns: 30 },
    );
  });
});

describe("pack handles", () => {
  it("keeps a handle open between reads, closes it only when its last reader is done, and reopens after forget", async () => {
    const tmp = tempDir("sanbox-handles-");
    try {
      const path = join(tmp.dir, "p");
      await writeFile(path, "abcdef");
      let opened = 0;
      const handles = new PackHandles(async () => {
        opened++;
        return open(path, "r");
      }, 1);
      const read = (fh: Awaited<ReturnType<typeof open>>): Promise<string> => fh.read(Buffer.alloc(3), 0, 3, 0).then((r) => r.buffer.toString());
      expect(await handles.use("a", read)).toBe("abc");
      expect(await handles.use("a", read)).toBe("abc");
      expect(opened).toBe(1);
      // Forgotten while a reader holds it: that read still completes on the open handle.
      const slow = handles.use("a", async (fh) => {
        handles.forget("a");
        await new Promise((r) => setTimeout(r, 20));
        return read(fh);
      });
      expect(await slow).toBe("abc");
      expect(await handles.use("a", read)).toBe("abc");
      expect(opened).toBe(2);
      // Over the limit (1): the idle handle of "a" is closed when "b" is used.
      expect(await handles.use("b", read)).toBe("abc");
      expect(await handles.use("a", read)).toBe("abc");
      expect(opened).toBe(4);
      await handles.closeAll();
    } finally {
      tmp.cleanup();
    }
  });
});
