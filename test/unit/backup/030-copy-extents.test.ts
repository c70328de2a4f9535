/**
 * The one copy routine over memory: ranges split into bounded requests, at most
 * `parallel` in flight, zeros and resize applied, byte counters exact; a failed
 * read rejects the copy and stops the other workers from starting new reads.
 */
import { describe, expect, it } from "vitest";
import { IoError } from "../../../src/errors.js";
import { copyExtents, type ExtentSource } from "../../../plugin/backup/copy-extents.js";
import type { ImageSink } from "../../../plugin/backup/repository/image-builder.js";

class MemorySink implements ImageSink {
  buf = Buffer.alloc(0);
  get size(): number {
    return this.buf.length;
  }
  async write(o: number, d: Buffer): Promise<void> {
    d.copy(this.buf, o);
  }
  async zero(o: number, l: number): Promise<void> {
    this.buf.fill(0, o, o + l);
  }
  async resize(n: number): Promise<void> {
    const next = Buffer.alloc(n);
    this.buf.copy(next, 0, 0, Math.min(n, this.buf.length));
    this.buf = next;
  }
}

function source(data: Buffer, failAt?: number): ExtentSource & { reads: number; maxInFlight: number } {
  let inFlight = 0;
  const s = {
    reads: 0,
    maxInFlight: 0,
    read: async (o: number, l: number): Promise<Buffer> => {
      s.reads++;
      inFlight++;
      s.maxInFlight = Math.max(s.maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 1));
      inFlight--;
      if (failAt !== undefined && o >= failAt) throw new IoError(`injected read failure at ${o}`);
      return Buffer.from(data.subarray(o, o + l));
    },
  };
  return s;
}

describe("copyExtents", () => {
  it("copies ranges to their destinations, bounded and counted", async () => {
    const data = Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => i % 253));
    const src = source(data);
    const sink = new MemorySink();
    await sink.resize(64 * 1024);
    sink.buf.fill(0xff);
    const st = await copyExtents(
      src,
      { copies: [{ srcOffset: 100_000, dstOffset: 0, length: 300_000 }, { srcOffset: 0, dstOffset: 400_000, length: 50_000 }], zeros: [{ offset: 300_000, length: 100_000 }], size: 500_000 },
      sink,
      { parallel: 3, maxRequest: 16 * 1024 },
    );
    expect(st.bytesRead).toBe(350_000);
    expect(st.bytesWritten).toBe(350_000);
    expect(st.bytesZeroed).toBe(100_000);
    expect(src.maxInFlight).toBeLessThanOrEqual(3);
    expect(src.reads).toBe(Math.ceil(300_000 / 16384) + Math.ceil(50_000 / 16384));
    expect(sink.size).toBe(500_000);
    expect(sink.buf.subarray(0, 300_000).equals(data.subarray(100_000, 400_000))).toBe(true);
    expect(sink.buf.subarray(300_000, 400_000).equals(Buffer.alloc(100_000))).toBe(true);
    expect(sink.buf.subarray(400_000, 450_000).equals(data.subarray(0, 50_000))).toBe(true);
  });

  it("a failed read rejects the copy and stops new reads", async () => {
    const src = source(Buffer.alloc(1 << 20), 64 * 1024);
    const sink = new MemorySink();
    await expect(copyExtents(src, { copies: [{ srcOffset: 0, dstOffset: 0, length: 1 << 20 }], size: 1 << 20 }, sink, { parallel: 2, maxRequest: 16 * 1024 })).rejects.toThrow(/injected/);
    expect(src.reads).toBeLessThan(64);
  });
});
