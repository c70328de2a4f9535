/**
 * `npm run bench -- store`: the array block store against itself at different
 * scales (flatness) and against plain `fs` on the same disk (throughput).
 *
 *  1. Snapshot create latency, p50/p99: 16 TiB vs 1 GiB LUN (same data written);
 *     1000 vs 1 existing snapshots. Target: big/small <= 1.5, i.e. ratio >= 0.67.
 *  2. CBT diff latency for 10,000 changed blocks: 16 TiB vs 1 GiB LUN; and 1k/10k/100k
 *     changes (per-change cost should stay flat: linear in changes).
 *  3. Throughput, 1 MiB sequential and 4 KiB random (queue depth 16), write durable
 *     at a final flush, then read; peer: a preallocated file with FileHandle.write/read
 *     and one fdatasync. Target ratio >= 0.5.
 *  4. RSS growth per written block after writing a lot (default 8 GiB; --store-gib=N).
 * Data lives under .bench-tmp/ in the checkout (a real disk, never tmpfs).
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, rm } from "node:fs/promises";
import { join } from "node:path";
import { ArrayStore } from "../simulator/array/index.js";
import type { BenchResult, BenchRow } from "./report.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
// Compiled to dist/bench/store.js: the checkout root is two levels up.
const ROOT = join(import.meta.dirname, "..", "..", ".bench-tmp");

function log(msg: string): void {
  process.stderr.write(`[bench store] ${msg}\n`);
}
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}
async function freshStore(name: string): Promise<{ store: ArrayStore; dir: string }> {
  const dir = join(ROOT, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  return { store: await ArrayStore.open(dir), dir };
}
/** Runs `n` tasks with at most `qd` in flight. */
async function pool(n: number, qd: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: qd }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

async function snapshotLatency(rows: BenchRow[]): Promise<void> {
  const { store, dir } = await freshStore("snap");
  const data = randomBytes(64 * KiB);
  const lat: Record<string, number[]> = {};
  for (const [label, size] of [["1GiB", GiB], ["16TiB", 16 * TiB]] as const) {
    await store.createLun({ name: `l${label}`, size });
    const v = store.openVolume({ lun: `l${label}` });
    for (let i = 0; i < 1024; i++) await v.write(i * MiB, data); // the same 64 MiB on both
    const xs: number[] = [];
    for (let i = 0; i < 40; i++) {
      await v.write((i % 1024) * MiB, data);
      xs.push(await timed(() => store.createSnapshot({ lun: `l${label}`, name: `${label}-${i}` })));
    }
    lat[label] = xs;
  }
  log("snapshot latency vs LUN size done; building 1000 snapshots");
  await store.createLun({ name: "few", size: GiB });
  await store.createLun({ name: "many", size: GiB });
  const fv = store.openVolume({ lun: "few" });
  const v = store.openVolume({ lun: "many" });
  const few: number[] = [];
  await store.createSnapshot({ lun: "few", name: "few-first" });
  for (let i = 0; i < 40; i++) {
    await fv.write((i % 1024) * MiB, data);
    few.push(await timed(() => store.createSnapshot({ lun: "few", name: `few-${i}` })));
  }
  for (let i = 0; i < 1000; i++) {
    await v.write((i % 1024) * MiB, data);
    await store.createSnapshot({ lun: "many", name: `bulk-${i}` });
  }
  const many: number[] = [];
  for (let i = 0; i < 40; i++) {
    await v.write((i % 1024) * MiB, data);
    many.push(await timed(() => store.createSnapshot({ lun: "many", name: `many-${i}` })));
  }
  const small = lat["1GiB"] ?? [];
  const big = lat["16TiB"] ?? [];
  for (const p of [50, 99]) {
    rows.push({ case: `snapshot create p${p}: 16 TiB vs 1 GiB LUN`, ours: pct(big, p), peer: "same, 1 GiB LUN", peerValue: pct(small, p), ratio: pct(small, p) / pct(big, p), unit: "ms", note: "target >= 0.67" });
    rows.push({ case: `snapshot create p${p}: 1000+ vs 1-40 existing snapshots`, ours: pct(many, p), peer: "same, 1-40 snapshots", peerValue: pct(few, p), ratio: pct(few, p) / pct(many, p), unit: "ms", note: "target >= 0.67" });
  }
  await store.close();
  await rm(dir, { recursive: true, force: true });
}

async function diffLatency(rows: BenchRow[]): Promise<void> {
  const { store, dir } = await freshStore("diff");
  const block = randomBytes(4 * KiB);
  const measure = async (name: string, size: number, changes: number): Promise<number> => {
    await store.createLun({ name, size, blockSize: 4 * KiB });
    const base = await store.createSnapshot({ lun: name, name: `${name}-base` });
    const v = store.openVolume({ lun: name });
    const stride = Math.floor(size / (4 * KiB) / changes);
    await pool(changes, 16, async (i) => v.write(i * stride * 4 * KiB, block));
    const target = await store.createSnapshot({ lun: name, name: `${name}-t` });
    const xs: number[] = [];
    for (let r = 0; r < 7; r++) {
      const t = performance.now();
      const d = store.changedExtents(base.id, { snapshot: target.id });
      xs.push(performance.now() - t);
      if (d.extents.length !== changes) throw new Error(`diff found ${d.extents.length} extents, expected ${changes}`);
    }
    log(`diff ${name}: ${changes} changes in ${pct(xs, 50).toFixed(2)} ms`);
    return pct(xs, 50);
  };
  const small = await measure("d1g", GiB, 10_000);
  const big = await measure("d16t", 16 * TiB, 10_000);
  rows.push({ case: "diff 10k changed blocks: 16 TiB vs 1 GiB LUN", ours: big, peer: "same, 1 GiB LUN", peerValue: small, ratio: small / big, unit: "ms", note: "target >= 0.67" });
  const k1 = await measure("c1k", 4 * GiB, 1_000);
  const k100 = await measure("c100k", 4 * GiB, 100_000);
  rows.push({ case: "diff 1k changes", ours: k1, peer: "-", peerValue: k1, ratio: 1, unit: "ms" });
  rows.push({ case: "diff 10k changes", ours: small, peer: "-", peerValue: small, ratio: 1, unit: "ms" });
  rows.push({ case: "diff 100k changes", ours: k100, peer: "-", peerValue: k100, ratio: 1, unit: "ms" });
  rows.push({ case: "diff cost per change at 100k vs at 10k", ours: (k100 / 100_000) * 1000, peer: "per change at 10k", peerValue: (small / 10_000) * 1000, ratio: small / 10_000 / (k100 / 100_000), unit: "µs/change", note: "~1 = linear" });
  await store.close();
  await rm(dir, { recursive: true, force: true });
}

async function throughput(rows: BenchRow[], totalBytes: number): Promise<void> {
  const { store, dir } = await freshStore("tput");
  await store.createLun({ name: "t", size: totalBytes });
  const v = store.openVolume({ lun: "t" });
  const peerPath = join(dir, "peer.img");
  const fh = await open(peerPath, "w+");
  await fh.truncate(totalBytes);
  for (let o = 0; o < totalBytes; o += 4 * MiB) await fh.write(Buffer.alloc(4 * MiB), 0, 4 * MiB, o); // preallocate
  await fh.datasync();
  const big = randomBytes(MiB);
  const small = randomBytes(4 * KiB);
  const nSeq = totalBytes / MiB;
  const nRand = Math.min(20_000, totalBytes / (4 * KiB));
  const offs = Array.from({ length: nRand }, () => Math.floor(Math.random() * (totalBytes / (4 * KiB))) * 4 * KiB);
  const mbps = (bytes: number, ms: number): number => bytes / MiB / (ms / 1000);
  const cases: [string, () => Promise<unknown>, () => Promise<unknown>, number][] = [
    [
      "write 1 MiB sequential (QD4, flush at end)",
      async () => {
        await pool(nSeq, 4, async (i) => v.write(i * MiB, big));
        await v.flush();
      },
      async () => {
        await pool(nSeq, 4, async (i) => void (await fh.write(big, 0, MiB, i * MiB)));
        await fh.datasync();
      },
      nSeq * MiB,
    ],
    ["read 1 MiB sequential (QD4)", () => pool(nSeq, 4, async (i) => void (await v.read(i * MiB, MiB))), () => pool(nSeq, 4, async (i) => void (await fh.read(Buffer.alloc(MiB), 0, MiB, i * MiB))), nSeq * MiB],
    [
      "write 4 KiB random overwrite (QD16, flush at end)",
      async () => {
        await pool(nRand, 16, async (i) => v.write(offs[i] ?? 0, small));
        await v.flush();
      },
      async () => {
        await pool(nRand, 16, async (i) => void (await fh.write(small, 0, 4 * KiB, offs[i] ?? 0)));
        await fh.datasync();
      },
      nRand * 4 * KiB,
    ],
    ["read 4 KiB random (QD16)", () => pool(nRand, 16, async (i) => void (await v.read(offs[i] ?? 0, 4 * KiB))), () => pool(nRand, 16, async (i) => void (await fh.read(Buffer.alloc(4 * KiB), 0, 4 * KiB, offs[i] ?? 0))), nRand * 4 * KiB],
  ];
  for (const [name, ours, peer, bytes] of cases) {
    const p = mbps(bytes, await timed(peer));
    const o = mbps(bytes, await timed(ours));
    log(`${name}: ours ${o.toFixed(0)} MiB/s, fs ${p.toFixed(0)} MiB/s`);
    rows.push({ case: name, ours: o, peer: "fs FileHandle, preallocated file", peerValue: p, ratio: o / p, unit: "MiB/s", note: "target >= 0.5" });
  }
  await fh.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
}

async function rssPerBlock(rows: BenchRow[], totalBytes: number): Promise<void> {
  const { store, dir } = await freshStore("rss");
  await store.createLun({ name: "r", size: 16 * TiB });
  const v = store.openVolume({ lun: "r" });
  const buf = randomBytes(MiB);
  global.gc?.();
  const before = process.memoryUsage().rss;
  const n = totalBytes / MiB;
  const t = performance.now();
  // Spread over the LUN: 1 MiB every 1 GiB, so mappings are not one dense run.
  await pool(n, 4, async (i) => {
    await v.write(i * GiB + (i % 1024) * MiB, buf);
    if (i % 1024 === 1023) {
      await v.flush();
      log(`rss: ${((i + 1) / 1024).toFixed(0)} GiB written`);
    }
  });
  await v.flush();
  const ms = performance.now() - t;
  global.gc?.();
  const after = process.memoryUsage().rss;
  const blocks = totalBytes / (64 * KiB);
  const perBlock = Math.max(0, after - before) / blocks;
  rows.push({ case: `RSS growth per written 64 KiB block after ${totalBytes / GiB} GiB`, ours: perBlock, peer: "bytes per block of a 16-byte in-memory map entry (reference)", peerValue: 16, ratio: 16 / Math.max(perBlock, 1e-9), unit: "bytes/block", note: `${(totalBytes / MiB / (ms / 1000)).toFixed(0)} MiB/s while writing; RSS includes LMDB's mapped pages` });
  await store.close();
  await rm(dir, { recursive: true, force: true });
}

export async function run(argv: string[]): Promise<BenchResult> {
  const gibArg = argv.find((a) => a.startsWith("--store-gib="));
  const rssGiB = gibArg ? Number(gibArg.split("=")[1]) : 8;
  const tputArg = argv.find((a) => a.startsWith("--store-tput-mib="));
  const tputMiB = tputArg ? Number(tputArg.split("=")[1]) : 256;
  await mkdir(ROOT, { recursive: true });
  const rows: BenchRow[] = [];
  log("snapshot latency");
  await snapshotLatency(rows);
  log("diff latency");
  await diffLatency(rows);
  log(`throughput (${tputMiB} MiB)`);
  await throughput(rows, tputMiB * MiB);
  log(`RSS after ${rssGiB} GiB`);
  await rssPerBlock(rows, rssGiB * GiB);
  return {
    bench: "store",
    rows,
    notes: [
      "Latency rows: ratio = peer / ours, so >= 0.67 means the big case costs at most 1.5x the small one (flat).",
      "Snapshot create includes making it durable (fdatasync of data files + LMDB sync), which dominates.",
      "4 KiB random writes overwrite blocks already written by the sequential pass (in place, no metadata), matching the peer's preallocated file.",
      `Data directory: ${ROOT} (disk, not tmpfs).`,
    ],
  };
}
