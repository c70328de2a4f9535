/**
 * `npm run bench -- hash [--total 512M]`: SHA-256 inline on the event loop
 * against the worker pool (src/workers/sha256.ts), at 64 KiB and 1 MiB
 * chunks. The question it answers: does moving chunk hashing off the event
 * loop pay on this machine? "ours" is the pool, "peer" inline hashing.
 * Buffers are fresh per chunk (as chunks are in a backup) and transferred.
 */
import { createHash, randomFillSync } from "node:crypto";
import { availableParallelism } from "node:os";
import { parseSize } from "../src/size.js";
import { Sha256Pool } from "../src/workers/sha256.js";
import { argValue, progress } from "./harness.js";
import type { BenchResult, BenchRow } from "./report.js";

const MiB = 1024 * 1024;

export async function run(argv: string[]): Promise<BenchResult> {
  const total = parseSize(argValue(argv, "--total") ?? "512M");
  const rows: BenchRow[] = [];
  const source = randomFillSync(Buffer.allocUnsafeSlow(16 * MiB));
  const workers = Math.max(1, Math.min(4, availableParallelism()));
  for (const chunk of [64 * 1024, MiB]) {
    const count = Math.floor(total / chunk);
    const fresh = (i: number): Buffer => {
      const b = Buffer.allocUnsafeSlow(chunk);
      source.copy(b, 0, (i * chunk) % (source.length - chunk), ((i * chunk) % (source.length - chunk)) + chunk);
      return b;
    };
    progress(`sha256 inline, ${count} x ${chunk / 1024} KiB`);
    let t0 = performance.now();
    for (let i = 0; i < count; i++) createHash("sha256").update(fresh(i)).digest("hex");
    const inlineMs = performance.now() - t0;
    progress(`sha256 on ${workers} workers, ${count} x ${chunk / 1024} KiB`);
    const pool = new Sha256Pool({ size: workers });
    t0 = performance.now();
    const inFlight: Promise<unknown>[] = [];
    for (let i = 0; i < count; i++) {
      inFlight.push(pool.hash(fresh(i)));
      if (inFlight.length >= 4 * workers) await inFlight.shift();
    }
    await Promise.all(inFlight);
    const poolMs = performance.now() - t0;
    await pool.close();
    const mibs = (ms: number): string => `${(total / MiB / (ms / 1000)).toFixed(0)} MiB/s`;
    rows.push({ case: `sha256 ${total / MiB} MiB in ${chunk / 1024} KiB chunks`, ours: poolMs, peer: "inline createHash", peerValue: inlineMs, ratio: inlineMs / poolMs, unit: "ms", note: `pool (${workers} workers) ${mibs(poolMs)}, inline ${mibs(inlineMs)}` });
  }
  return { bench: "hash", rows, notes: [`${availableParallelism()} CPUs; the pool frees the event loop even when the ratio is below 1`] };
}
