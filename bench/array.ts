/**
 * `npm run bench -- array`: the array daemon against peers in the same run.
 *
 *  1. NBD throughput of a LUN export on the persistent store (`sanbox array
 *     serve`) against `nbdkit file` serving a raw file in the same directory,
 *     both driven by nbdcopy over a Unix socket: sequential write of SIZE
 *     (default 512 MiB, --size) from a random file, then read to null:.
 *     Ratio = ours / nbdkit throughput (target >= 0.5 for now).
 *  2. GetChangedBlocks end to end (gRPC stream, client-side collect) for 10k
 *     changed extents on a 16 TiB LUN, against reading the same diff through the
 *     NBD path (`nbdinfo --map=qemu:dirty-bitmap:<base>` on the snapshot export).
 *     Both paths are ours; the row shows the control-plane path is not the slow one.
 *
 * `--backend rbd`: the same array on Ceph RBD instead (bench/array-rbd.ts).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { NbdClient } from "../src/nbd/client.js";
import { connectArray } from "../src/rpc/array-client.js";
import { collect } from "../src/rpc/client.js";
import { argValue, bestOf, writeRandomFile, progress, scratch, startArray, startNbdkit, timeCommand } from "./harness.js";
import type { BenchResult, BenchRow } from "./report.js";
import { parseSize } from "../src/size.js";

export async function run(argv: string[]): Promise<BenchResult> {
  if (argValue(argv, "--backend") === "rbd") return (await import("./array-rbd.js")).run(argv);
  const size = parseSize(argValue(argv, "--size") ?? "512M");
  const rows: BenchRow[] = [];
  const notes: string[] = [];
  const s = scratch("array");
  const d = await startArray(join(s.dir, "array"));
  try {
    const rpc = connectArray({ endpoint: d.rpc });
    // ---- 1. throughput
    const src = join(s.dir, "src.img");
    progress(`creating ${size} bytes of random source data`);
    writeRandomFile(src, size);
    await rpc.createLun({ name: "bench", sizeBytes: size });
    const lunUri = `nbd+unix:///lun/bench?socket=${d.nbdSocket}`;
    const raw = join(s.dir, "raw.img");
    writeFileSync(raw, Buffer.alloc(0));
    const { truncateSync } = await import("node:fs");
    truncateSync(raw, size);
    const peer = await startNbdkit(join(s.dir, "nbdkit.sock"), ["file", raw]);
    try {
      for (const [name, mk] of [
        ["write", (u: string): string[] => [src, u]],
        ["read", (u: string): string[] => [u, "null:"]],
      ] as const) {
        progress(`nbdcopy ${name}: array LUN`);
        const ours = await bestOf(3, () => timeCommand("/usr/bin/nbdcopy", mk(lunUri)));
        progress(`nbdcopy ${name}: nbdkit file`);
        const theirs = await bestOf(3, () => timeCommand("/usr/bin/nbdcopy", mk(peer.uri)));
        const mb = size / 1024 / 1024;
        rows.push({ case: `nbdcopy ${name} ${Math.round(mb)} MiB`, ours: mb / ours, peer: "nbdkit file", peerValue: mb / theirs, ratio: theirs / ours, unit: "MiB/s" });
      }
    } finally {
      await peer.stop();
    }
    notes.push(`LUN export on the persistent store (LMDB metadata + slot files, 64 KiB blocks) vs nbdkit file on a raw file in the same directory; nbdcopy defaults (multi-conn); best of 3 each (the first write to the LUN allocates, later ones overwrite)`);

    // ---- 2. CBT for 10k changed extents on a 16 TiB LUN
    const TiB = 2 ** 40;
    const big = await rpc.createLun({ name: "big", sizeBytes: 16 * TiB });
    const base = (await rpc.createSnapshot({ name: "big-base", lunIds: [big.lunId] })).snapshots[0]?.snapshotId ?? "";
    const N = 10_000;
    const stride = Math.floor((16 * TiB) / N / 65536) * 65536;
    progress(`writing ${N} scattered 4 KiB blocks into a 16 TiB LUN`);
    const c = await NbdClient.connect(`nbd+unix:///lun/big?socket=${d.nbdSocket}`);
    const block = Buffer.alloc(4096, 0x5a);
    for (let i = 0; i < N; i += 256) await Promise.all(Array.from({ length: Math.min(256, N - i) }, (_, k) => c.write((i + k) * stride, block)));
    await c.flush();
    await c.close();
    const target = (await rpc.createSnapshot({ name: "big-target", lunIds: [big.lunId] })).snapshots[0]?.snapshotId ?? "";
    let count = 0;
    const grpcSecs = await bestOf(3, async () => {
      const t0 = process.hrtime.bigint();
      const msgs = await collect(rpc.getChangedBlocks({ baseSnapshotId: base, targetSnapshotId: target }));
      count = msgs.reduce((n, m) => n + m.blockMetadata.length, 0);
      return Number(process.hrtime.bigint() - t0) / 1e9;
    });
    const mapUri = `nbd+unix:///snap/${target}/big?socket=${d.nbdSocket}`;
    const nbdSecs = await bestOf(3, () => timeCommand("/usr/bin/nbdinfo", [`--map=qemu:dirty-bitmap:${base}`, mapUri]));
    rows.push({ case: `GetChangedBlocks ${count} extents, 16 TiB LUN`, ours: grpcSecs * 1000, peer: "nbdinfo --map=qemu:dirty-bitmap (same array)", peerValue: nbdSecs * 1000, ratio: nbdSecs / grpcSecs, unit: "ms" });
    notes.push(`CBT: ${count} changed extents found (expected ${N}); gRPC stream collected in-process, best of 3; cost is O(changed extents), never a scan of the 16 TiB LUN`);
    rpc.close();
  } finally {
    await d.stop();
    s.cleanup();
  }
  return { bench: "array", rows, notes };
}
