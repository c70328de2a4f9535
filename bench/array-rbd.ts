/**
 * `npm run bench -- array --backend rbd`: the array with its LUNs on Ceph RBD, on a
 * throwaway cluster started by scripts/ceph-cluster.mjs (BlueStore on a sparse file).
 *
 *  1. nbdcopy write of SIZE (default 256 MiB, --size) and read to null: through our
 *     LUN export (our NBD server → our client → qemu-nbd → librbd) against qemu-nbd
 *     serving the same image straight (the array stopped meanwhile, so one writer
 *     holds the image's exclusive lock). Goal: ratio >= 0.8.
 *  2. Group snapshot of 2 LUNs and GetChangedBlocks (`rbd diff --from-snap`) with
 *     1000 scattered 4 KiB writes per LUN, at 16 GiB against 1 TiB LUNs: the cost
 *     should not grow with the LUN size (object-map/fast-diff). It does: `rbd diff`
 *     walks every object of the image (about 66 µs per object here), so this part
 *     uses images of --cbt-object-size (default 4M: 262 k objects at 1 TiB, 17 s per
 *     diff); with the array's default 64 KiB objects one 1 TiB diff takes over
 *     600 s (16 M objects), and the row would never print.
 */
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { NbdClient } from "../src/nbd/client.js";
import { connectArray, type ArrayClient } from "../src/rpc/array-client.js";
import { collect } from "../src/rpc/client.js";
import { parseSize } from "../src/size.js";
import { argValue, bestOf, writeRandomFile, progress, ROOT, scratch, startArray, timeCommand, type Daemon } from "./harness.js";
import type { BenchResult, BenchRow } from "./report.js";

function cluster(cmd: "start" | "stop", dir: string): string {
  const r = spawnSync(process.execPath, [join(ROOT, "scripts", "ceph-cluster.mjs"), cmd, dir], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  if (r.status !== 0) throw new Error(`ceph-cluster ${cmd} failed (exit ${r.status ?? r.signal}); install Ceph with: node scripts/setup.mjs --rbd`);
  return /^CEPH_CONF=(.+)$/m.exec(r.stdout)?.[1] ?? "";
}

async function scatter(d: Daemon, lun: string, size: number, n: number): Promise<void> {
  const c = await NbdClient.connect(`nbd+unix:///lun/${lun}?socket=${d.nbdSocket}`);
  const stride = Math.floor(size / n / 65536) * 65536;
  const block = Buffer.alloc(4096, 0x5a);
  for (let i = 0; i < n; i += 64) await Promise.all(Array.from({ length: Math.min(64, n - i) }, (_, k) => c.write((i + k) * stride, block)));
  await c.flush();
  await c.close();
}

async function groupAndCbt(rpc: ArrayClient, d: Daemon, size: number, tag: string): Promise<{ snapMs: number; cbtMs: number; extents: number }> {
  const a = await rpc.createLun({ name: `${tag}-a`, sizeBytes: size });
  const b = await rpc.createLun({ name: `${tag}-b`, sizeBytes: size });
  const base = (await rpc.createSnapshot({ name: `${tag}-base`, lunIds: [a.lunId, b.lunId] })).snapshots[0]?.snapshotId ?? "";
  progress(`${tag}: 1000 scattered 4 KiB writes into each of 2 LUNs`);
  await scatter(d, `${tag}-a`, size, 1000);
  await scatter(d, `${tag}-b`, size, 1000);
  let i = 0;
  let target = "";
  const snapSecs = await bestOf(3, async () => {
    const t0 = process.hrtime.bigint();
    const r = await rpc.createSnapshot({ name: `${tag}-t${i++}`, lunIds: [a.lunId, b.lunId] });
    target = r.snapshots[0]?.snapshotId ?? "";
    return Number(process.hrtime.bigint() - t0) / 1e9;
  });
  let extents = 0;
  const cbtSecs = await bestOf(3, async () => {
    const t0 = process.hrtime.bigint();
    const msgs = await collect(rpc.getChangedBlocks({ baseSnapshotId: base, targetSnapshotId: target }));
    extents = msgs.reduce((n, m) => n + m.blockMetadata.length, 0);
    return Number(process.hrtime.bigint() - t0) / 1e9;
  });
  return { snapMs: snapSecs * 1000, cbtMs: cbtSecs * 1000, extents };
}

export async function run(argv: string[]): Promise<BenchResult> {
  const size = parseSize(argValue(argv, "--size") ?? "256M");
  const cbtObjectSize = argValue(argv, "--cbt-object-size") ?? "4M";
  const rows: BenchRow[] = [];
  const notes: string[] = [];
  const s = scratch("array-rbd");
  const cephDir = join(s.dir, "ceph");
  progress("starting a throwaway Ceph cluster");
  const conf = cluster("start", cephDir);
  // rbd diff on a 1 TiB image of 64 KiB objects walks 16 M object-map entries: allow it minutes.
  const arrayArgs = ["--backend", "rbd", "--ceph-conf", conf, "--pool", "rbd", "--ceph-timeout", "600"];
  const dataDir = join(s.dir, "array");
  try {
    const src = join(s.dir, "src.img");
    progress(`creating ${size} bytes of random source data`);
    writeRandomFile(src, size);
    truncateSync(src, size);
    const mb = size / 1024 / 1024;
    const cases = [
      ["write", (u: string): string[] => [src, u]],
      ["read", (u: string): string[] => [u, "null:"]],
    ] as const;

    // ---- 1. ours, then qemu-nbd straight on the same image
    let d = await startArray(dataDir, arrayArgs);
    let rpc = connectArray({ endpoint: d.rpc });
    await rpc.createLun({ name: "bench", sizeBytes: size });
    const lunUri = `nbd+unix:///lun/bench?socket=${d.nbdSocket}`;
    const ours = new Map<string, number>();
    for (const [name, mk] of cases) {
      progress(`nbdcopy ${name}: array LUN on RBD`);
      ours.set(name, await bestOf(3, () => timeCommand("/usr/bin/nbdcopy", mk(lunUri))));
    }
    rpc.close();
    await d.stop();
    const cat = JSON.parse(readFileSync(join(dataDir, "rbd-catalogue.json"), "utf8")) as { luns: { name: string; image: string }[] };
    const image = cat.luns.find((l) => l.name === "bench")?.image ?? "";
    const sock = join(s.dir, "qemu.sock");
    const qemu = spawn("/usr/bin/qemu-nbd", ["--persistent", "--format=raw", `--socket=${sock}`, "--shared=16", "--cache=writeback", "--aio=threads", "--discard=unmap", `rbd:rbd/${image}:conf=${conf}`], { stdio: "ignore" });
    try {
      const qUri = `nbd+unix:///?socket=${sock}`;
      for (let t = 0; t < 200; t++) {
        if (spawnSync("/usr/bin/nbdinfo", ["--size", qUri], { stdio: "ignore" }).status === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const [name, mk] of cases) {
        progress(`nbdcopy ${name}: qemu-nbd straight on the image`);
        const theirs = await bestOf(3, () => timeCommand("/usr/bin/nbdcopy", mk(qUri)));
        const mine = ours.get(name) ?? Infinity;
        const ratio = theirs / mine;
        rows.push({ case: `nbdcopy ${name} ${Math.round(mb)} MiB`, ours: mb / mine, peer: "qemu-nbd on the same RBD image", peerValue: mb / theirs, ratio, unit: "MiB/s", goal: { text: "ratio >= 0.8", pass: ratio >= 0.8 } });
      }
    } finally {
      const gone = new Promise<void>((r) => qemu.once("exit", () => r()));
      qemu.kill("SIGTERM");
      await gone;
    }
    notes.push(`LUN export of the array on RBD vs qemu-nbd straight on the same image (BlueStore on a sparse file, one OSD, pool size 1); nbdcopy defaults (multi-conn), best of 3; the first write allocates, later ones overwrite`);

    // ---- 2. group snapshot and CBT latency, 16 GiB vs 1 TiB
    d = await startArray(dataDir, [...arrayArgs, "--object-size", cbtObjectSize]);
    rpc = connectArray({ endpoint: d.rpc });
    try {
      const small = await groupAndCbt(rpc, d, 16 * 2 ** 30, "g16");
      const large = await groupAndCbt(rpc, d, 2 ** 40, "t1");
      rows.push({ case: "group snapshot, 2 LUNs of 16 GiB (vs 1 TiB)", ours: small.snapMs, peer: "same, 2 LUNs of 1 TiB", peerValue: large.snapMs, ratio: large.snapMs / small.snapMs, unit: "ms" });
      rows.push({ case: `GetChangedBlocks ${small.extents} extents, 16 GiB (vs 1 TiB)`, ours: small.cbtMs, peer: `same, 1 TiB (${large.extents} extents)`, peerValue: large.cbtMs, ratio: large.cbtMs / small.cbtMs, unit: "ms" });
      notes.push(`Group snapshot: intent, fence, drain, flush through qemu-nbd, one rbd snap create per image, commit; CBT: rbd diff --from-snap through the gRPC stream; best of 3; a ratio near 1 means the cost does not grow with the LUN size; images of ${cbtObjectSize} objects (--cbt-object-size), so 16 GiB is ${(16 * 2 ** 30) / parseSize(cbtObjectSize)} objects and 1 TiB ${2 ** 40 / parseSize(cbtObjectSize)}`);
    } finally {
      rpc.close();
      await d.stop();
    }
  } finally {
    cluster("stop", cephDir);
    s.cleanup();
  }
  return { bench: "array --backend rbd", rows, notes };
}
