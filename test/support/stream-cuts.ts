/** Helpers for feeding decoders a byte stream cut at chosen points, and comparing what they framed. */

/** `stream` split at every offset in `cuts` (deduplicated, any order); empty pieces kept. */
export function cutAt(stream: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts)].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(stream.subarray(prev, p));
    prev = p;
  }
  out.push(stream.subarray(prev));
  return out;
}

/** A cheap, exact fingerprint of decoded frames (deep-equal on large Buffers is slow). */
export function frameKey(frames: readonly unknown[]): string {
  return JSON.stringify(frames, (_k, v: unknown) => {
    if (typeof v === "bigint") return `${v}n`;
    // Buffer.toJSON() has already run: a Buffer arrives as { type: "Buffer", data: number[] }.
    if (typeof v === "object" && v !== null && "type" in v && v.type === "Buffer" && "data" in v && Array.isArray(v.data)) {
      return Buffer.from(v.data as number[]).toString("hex");
    }
    return v;
  });
}
