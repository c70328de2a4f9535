/**
 * `npm run bench -- store`: the array block store against itself at different
 * scales (flatness) and against plain `fs` on the same disk (throughput).
 *
 *  1. Snapshot create latency, p50/p99: 16 TiB vs 1 GiB LUN (same data written);
 *     1000 vs 1 existing snapshots. Target: big/small <= 1.5, i.e. ratio >= 0.67.
 *  2. CBT diff latency for 10,000 changed blocks: 16 TiB vs 1 GiB LUN; and 1k/10k/100k
 *     changes (per-change cost should stay flat: linear in changes).
 *  3. Throughput, 1 MiB sequential (QD4) and 4 KiB random (QD16), writes durable at a
 *     final flush, then reads; peer: a file with FileHandle.write/read and one fdatasync
 *     (a new empty file for first writes, a preallocated one otherwise). Best of 3,
 *     interleaved. Target ratio >= 0.5. Options: --store-only=snap,diff,tput,rss.
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
  // Same data on every LUN: 64 MiB spread over the first GiB.
  for (const [name, size] of [["small", GiB], ["huge", 16 * TiB], ["few", GiB], ["many", GiB]] as const) {
    await store.createLun({ name, size });
    const v = store.openVolume({ lun: name });
    for (let i = 0; i < 1024; i++) await v.write(i * MiB, data);
  }
  log("building 1000 snapshots");
  const many = store.openVolume({ lun: "many" });
  for (let i = 0; i < 1000; i++) {
    await many.write((i % 1024) * MiB, data);
    await store.createSnapshot({ lun: "many", name: `bulk-${i}` });
  }
  await store.createSnapshot({ lun: "few", name: "few-first" });
  // Interleave the cases so machine noise (fsync latency) hits all of them alike.
  const lat = new Map<string, number[]>();
  for (let i = 0; i < 100; i++) {
    for (const name of ["small", "huge", "few", "many"]) {
      await store.openVolume({ lun: name }).write((i % 1024) * MiB, data);
      const t = await timed(() => store.createSnapshot({ lun: name, name: `${name}-${i}` }));
      lat.set(name, [...(lat.get(name) ?? []), t]);
    }
  }
  const get = (n: string): number[] => lat.get(n) ?? [];
  for (const p of [50, 99]) {
    rows.push({ case: `snapshot create p${p}: 16 TiB vs 1 GiB LUN`, ours: pct(get("huge"), p), peer: "same, 1 GiB LUN", peerValue: pct(get("small"), p), ratio: pct(get("small"), p) / pct(get("huge"), p), unit: "ms", note: "target >= 0.67" });
    rows.push({ case: `snapshot create p${p}: 1000+ vs 1-100 existing snapshots`, ours: pct(get("many"), p), peer: "same, 1-100 snapshots", peerValue: pct(get("few"), p), ratio: pct(get("few"), p) / pct(get("many"), p), unit: "ms", note: "target >= 0.67" });
  }
  await store.close();
  await rm(dir, { recursive: true, force: true });
}

async function diffLatency(rows: BenchRow[]): Promise<void> {
  const { store, dir } = await freshStore("diff");
  const block = randomBytes(4 * KiB);
  const setup = async (name: string, size: number, changes: number): Promise<() => number> => {
    await store.createLun({ name, size, blockSize: 4 * KiB });
    const base = await store.createSnapshot({ lun: name, name: `${name}-base` });
    const v = store.openVolume({ lun: name });
    const stride = Math.floor(size / (4 * KiB) / changes);
    await pool(changes, 16, async (i) => v.write(i * stride * 4 * KiB, block));
    const target = await store.createSnapshot({ lun: name, name: `${name}-t` });
    return () => {
      const t = performance.now();
      const d = store.changedExtents(base.id, { snapshot: target.id });
      const ms = performance.now() - t;
      if (d.extents.length !== changes) throw new Error(`diff found ${d.extents.length} extents, expected ${changes}`);
      return ms;
    };
  };
  const cases: [string, () => number][] = [
    ["1 GiB, 10k", await setup("d1g", GiB, 10_000)],
    ["16 TiB, 10k", await setup("d16t", 16 * TiB, 10_000)],
    ["4 GiB, 1k", await setup("c1k", 4 * GiB, 1_000)],
    ["4 GiB, 100k", await setup("c100k", 4 * GiB, 100_000)],
  ];
  const lat = new Map<string, number[]>();
  for (let r = 0; r < 9; r++) for (const [name, fn] of cases) lat.set(name, [...(lat.get(name) ?? []), fn()]);
  const med = (n: string): number => pct(lat.get(n) ?? [], 50);
  for (const [name] of cases) log(`diff ${name}: ${med(name).toFixed(2)} ms`);
  const small = med("1 GiB, 10k");
  const big = med("16 TiB, 10k");
  const k1 = med("4 GiB, 1k");
  const k100 = med("4 GiB, 100k");
  rows.push({ case: "diff 10k changed blocks: 16 TiB vs 1 GiB LUN", ours: big, peer: "same, 1 GiB LUN", peerValue: small, ratio: small / big, unit: "ms", note: "median of 9; target >= 0.67" });
  rows.push({ case: "diff 1k changes", ours: k1, peer: "-", peerValue: k1, ratio: 1, unit: "ms" });
  rows.push({ case: "diff 10k changes", ours: small, peer: "-", peerValue: small, ratio: 1, unit: "ms" });
  rows.push({ case: "diff 100k changes", ours: k100, peer: "-", peerValue: k100, ratio: 1, unit: "ms" });
  rows.push({ case: "diff cost per change at 100k vs at 10k", ours: (k100 / 100_000) * 1000, peer: "per change at 10k", peerValue: (small / 10_000) * 1000, ratio: small / 10_000 / (k100 / 100_000), unit: "µs/change", note: "~1 = linear" });
  await store.close();
  await rm(dir, { recursive: true, force: true });
}

async function throughput(rows: BenchRow[], totalBytes: number): Promise<void> {
  const big = randomBytes(MiB);
  const small = randomBytes(4 * KiB);
  const nSeq = totalBytes / MiB;
  const nRand = Math.min(20_000, totalBytes / (4 * KiB));
  const offs = Array.from({ length: nRand }, () => Math.floor(Math.random() * (totalBytes / (4 * KiB))) * 4 * KiB);
  const mbps = (bytes: number, ms: number): number => bytes / MiB / (ms / 1000);
  const REPS = 3;
  const best = { ours: new Map<string, number>(), peer: new Map<string, number>() };
  const note = (side: "ours" | "peer", name: string, v: number): void => {
    best[side].set(name, Math.max(best[side].get(name) ?? 0, v));
  };
  const FIRST = "write 1 MiB sequential into a new thin LUN (QD4, flush at end)";
  const names = [FIRST, "write 1 MiB sequential overwrite (QD4, flush at end)", "read 1 MiB sequential (QD4)", "write 4 KiB random overwrite (QD16, flush at end)", "read 4 KiB random (QD16)"];
  // Interleave repetitions of ours and the peer so machine noise hits both alike; keep the best of each.
  for (let rep = 0; rep < REPS; rep++) {
    const { store, dir } = await freshStore(`tput${rep}`);
    await store.createLun({ name: "t", size: totalBytes });
    const v = store.openVolume({ lun: "t" });
    const fresh = await open(join(dir, "fresh.img"), "w+");
    note("peer", FIRST, mbps(totalBytes, await timed(async () => {
      await pool(nSeq, 4, async (i) => void (await fresh.write(big, 0, MiB, i * MiB)));
      await fresh.datasync();
    })));
    await fresh.close();
    note("ours", FIRST, mbps(totalBytes, await timed(async () => {
      await pool(nSeq, 4, async (i) => v.write(i * MiB, big));
      await v.flush();
    })));
    const fh = await open(join(dir, "fresh.img"), "r+"); // now fully allocated: the preallocated peer
    const cases: [string, () => Promise<unknown>, () => Promise<unknown>, number][] = [
      [
        names[1] ?? "",
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
      [names[2] ?? "", () => pool(nSeq, 4, async (i) => void (await v.read(i * MiB, MiB))), () => pool(nSeq, 4, async (i) => void (await fh.read(Buffer.alloc(MiB), 0, MiB, i * MiB))), nSeq * MiB],
      [
        names[3] ?? "",
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
      [names[4] ?? "", () => pool(nRand, 16, async (i) => void (await v.read(offs[i] ?? 0, 4 * KiB))), () => pool(nRand, 16, async (i) => void (await fh.read(Buffer.alloc(4 * KiB), 0, 4 * KiB, offs[i] ?? 0))), nRand * 4 * KiB],
    ];
    for (const [name, ours, peer, bytes] of cases) {
      note("peer", name, mbps(bytes, await timed(peer)));
      note("ours", name, mbps(bytes, await timed(ours)));
    }
    log(`throughput repetition ${rep + 1}/${REPS} done`);
    await fh.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
  for (const name of names) {
    const o = best.ours.get(name) ?? 0;
    const p = best.peer.get(name) ?? 0;
    log(`${name}: ours ${o.toFixed(0)} MiB/s, fs ${p.toFixed(0)} MiB/s`);
    rows.push({ case: name, ours: o, peer: name === FIRST ? "fs FileHandle, new empty file" : "fs FileHandle, preallocated file", peerValue: p, ratio: o / p, unit: "MiB/s", note: `best of ${REPS}; target >= 0.5` });
  }
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
  const only = argv.find((a) => a.startsWith("--store-only="))?.split("=")[1];
  const tputArg = argv.find((a) => a.startsWith("--store-tput-mib="));
  const tputMiB = tputArg ? Number(tputArg.split("=")[1]) : 256;
  await mkdir(ROOT, { recursive: true });
  const rows: BenchRow[] = [];
  const want = (part: string): boolean => only === undefined || only.split(",").includes(part);
  if (want("snap")) {
    log("snapshot latency");
    await snapshotLatency(rows);
  }
  if (want("diff")) {
    log("diff latency");
    await diffLatency(rows);
  }
  if (want("tput")) {
    log(`throughput (${tputMiB} MiB)`);
    await throughput(rows, tputMiB * MiB);
  }
  if (want("rss")) {
    log(`RSS after ${rssGiB} GiB`);
    await rssPerBlock(rows, rssGiB * GiB);
  }
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
