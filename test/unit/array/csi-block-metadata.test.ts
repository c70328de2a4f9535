/**
 * The SnapshotMetadata stream rules (simulator/array/csi/block-metadata.ts,
 * CSI spec "Metadata Format"): for random CBT answers, every message has the
 * same type and capacity and at most max_results tuples; tuples ascend without
 * overlap across messages; the first ends after starting_offset; VARIABLE
 * tuples never touch, FIXED ones are one granule each; together they cover
 * exactly the changed bytes at or after the granule holding starting_offset.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { blockMetadataStream, metadataType, type BlockMetadataMessage } from "../../../simulator/array/csi/block-metadata.js";
import { frame } from "../../../simulator/array/service/array-service.js";
import { v1 } from "../../../src/rpc/proto.js";

const G = 65536;

async function* source(msgs: v1.IBlockMetadataResponse[]): AsyncGenerator<v1.IBlockMetadataResponse> {
  yield* msgs;
}

async function run(blocks: number[], size: number, start: number, max: number, mode: "fixed" | "variable"): Promise<BlockMetadataMessage[]> {
  const extents = [...new Set(blocks)].sort((a, b) => a - b).map((b, i) => ({ offset: b * G, length: G, flag: i % 2 === 0 ? v1.ExtentType.DATA : v1.ExtentType.ZERO }));
  const out: BlockMetadataMessage[] = [];
  for await (const m of blockMetadataStream(source([...frame(extents, size, start, 3)]), { mode, granule: G, startingOffset: start, maxResults: max })) out.push(m);
  return out;
}

describe("CSI block metadata stream", () => {
  it("keeps every stream rule, in both modes", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 63 }), { maxLength: 40 }),
        fc.integer({ min: 0, max: 64 * G }),
        fc.integer({ min: 1, max: 5 }),
        fc.constantFrom("fixed" as const, "variable" as const),
        async (blocks, start, max, mode) => {
          const size = 64 * G;
          const msgs = await run(blocks, size, start, max, mode);
          expect(msgs.length).toBeGreaterThan(0);
          const all = msgs.flatMap((m) => m.blockMetadata);
          for (const m of msgs) {
            expect(m.blockMetadataType).toBe(metadataType(mode));
            expect(m.volumeCapacityBytes).toBe(size);
            expect(m.blockMetadata.length).toBeLessThanOrEqual(max);
          }
          all.forEach((t, i) => {
            expect(t.sizeBytes).toBeGreaterThan(0);
            if (mode === "fixed") expect(t.sizeBytes).toBe(G);
            const prev = all[i - 1];
            if (prev !== undefined) expect(prev.byteOffset + prev.sizeBytes).toBeLessThanOrEqual(t.byteOffset);
            if (prev !== undefined && mode === "variable") expect(prev.byteOffset + prev.sizeBytes).toBeLessThan(t.byteOffset);
          });
          const first = all[0];
          if (first !== undefined) expect(first.byteOffset + first.sizeBytes).toBeGreaterThan(start);
          const covered = new Set(all.flatMap((t) => Array.from({ length: t.sizeBytes / G }, (_, k) => t.byteOffset / G + k)));
          const want = new Set(blocks.filter((b) => (b + 1) * G > start));
          expect([...covered].sort((a, b) => a - b)).toEqual([...want].sort((a, b) => a - b));
        },
      ),
      { numRuns: 300 },
    );
  });
});
