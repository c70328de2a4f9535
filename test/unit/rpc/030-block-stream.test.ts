/** resumableExtents: a stream broken by transient errors resumes at the last end, clipped, with nothing lost or repeated. */
import { describe, expect, it } from "vitest";
import { SanboxError } from "../../../src/errors.js";
import { resumableExtents, type BlockStreamCall } from "../../../src/rpc/block-stream.js";
import { v1 } from "../../../src/rpc/proto.js";
import { frame } from "../../../simulator/array/service/array-service.js";

const EXT = Array.from({ length: 50 }, (_, i) => ({ offset: i * 1000, length: 600, flag: i % 3 === 0 ? v1.ExtentType.ZERO : v1.ExtentType.DATA }));

/** A server that breaks the stream after `breakAfter` messages, `breaks` times; resumes start one extent early (CSI allows it). */
function flaky(breaks: number, breakAfter: number, code = "UNAVAILABLE"): { call: BlockStreamCall; starts: number[] } {
  const starts: number[] = [];
  let left = breaks;
  const call: BlockStreamCall = async function* (s) {
    starts.push(s);
    const early = Math.max(0, s - 700); // the first extent may start before s
    let n = 0;
    for (const m of frame(EXT, 50_000, early, 4)) {
      if (left > 0 && n++ === breakAfter) {
        left--;
        throw new SanboxError(code as "UNAVAILABLE", "connection lost");
      }
      yield {
        blockMetadataType: m.blockMetadataType ?? v1.BlockMetadataType.BLOCK_METADATA_TYPE_UNKNOWN,
        volumeCapacityBytes: m.volumeCapacityBytes ?? 0,
        blockMetadata: (m.blockMetadata ?? []).map((b) => ({ byteOffset: b.byteOffset ?? 0, sizeBytes: b.sizeBytes ?? 0, type: b.type ?? v1.ExtentType.EXTENT_TYPE_UNSPECIFIED })),
      };
    }
  };
  return { call, starts };
}

async function all(call: BlockStreamCall, retries?: number): Promise<{ offset: number; length: number; flag: string }[]> {
  const out = [];
  for await (const e of resumableExtents(call, retries === undefined ? {} : { retries })) out.push(e);
  return out;
}

describe("resumableExtents", () => {
  const want = EXT.map((e) => ({ offset: e.offset, length: e.length, flag: e.flag === v1.ExtentType.ZERO ? "ZERO" : "DATA" }));
  it("returns every extent once across broken streams", async () => {
    const f = flaky(3, 2);
    expect(await all(f.call)).toEqual(want);
    // Each resume starts at the end of the last extent received.
    expect(f.starts).toHaveLength(4);
    expect(f.starts[0]).toBe(0);
    for (const s of f.starts.slice(1)) expect(EXT.some((e) => e.offset + e.length === s)).toBe(true);
    expect([...f.starts].sort((a, b) => a - b)).toEqual(f.starts);
  });
  it("gives up after the retry budget, and never retries a real error", async () => {
    await expect(all(flaky(3, 1).call, 2)).rejects.toMatchObject({ code: "UNAVAILABLE" });
    await expect(all(flaky(1, 1, "NOT_FOUND").call)).rejects.toMatchObject({ code: "NOT_FOUND" });
  });
});
