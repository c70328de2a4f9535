/**
 * Restart keeps everything: LUNs, their data, snapshots, group snapshots, hosts,
 * mappings and exports survive SIGTERM + `sanbox array serve` on the same data
 * directory, and CBT still answers (including from a deleted base).
 */
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { NbdClient } from "../../src/nbd/client.js";
import { connectArray } from "../../src/rpc/array-client.js";
import { collect } from "../../src/rpc/client.js";
import { startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { tempDir } from "../support/tools.js";

async function state(endpoint: string): Promise<unknown> {
  const c = connectArray({ endpoint });
  try {
    const luns = (await c.listLuns({})).luns.map((l) => ({ id: l.lunId, name: l.name, size: l.sizeBytes, naa: l.naa, hosts: l.mappedHostIds }));
    const snaps = (await c.listSnapshots({})).snapshots.map((s) => ({ id: s.snapshotId, name: s.name, lun: s.lunId, group: s.groupSnapshotId }));
    const hosts = (await c.listHosts({})).hosts.map((h) => ({ id: h.hostId, name: h.name, identity: h.pskIdentity, luns: h.mappedLunIds }));
    const exports = (await c.listExports({})).exports.map((e) => ({ id: e.exportId, name: e.exportName, uri: e.uri, host: e.hostId }));
    const serial = (await c.getArrayInfo({})).serial;
    return { luns, snaps, hosts, exports, serial };
  } finally {
    c.close();
  }
}

describe("array daemon restart", () => {
  const tmp = tempDir("sanbox-e2e-430-");
  const dir = join(tmp.dir, "array");
  let d: ArrayDaemon | undefined;
  afterAll(async () => {
    await d?.stop();
    tmp.cleanup();
  });

  it("keeps LUNs, data, snapshots, hosts, mappings and exports; diffs still answer", async () => {
    d = await startArrayDaemon(dir);
    await d.cli(["lun", "create", "db", "8M"]);
    await d.cli(["lun", "create", "logs", "8M"]);
    await d.cli(["host", "create", "h1", "--psk-file", join(tmp.dir, "h1.psk")]);
    await d.cli(["lun", "map", "db", "h1"]);
    const c1 = await NbdClient.connect(d.uri("lun/db"));
    await c1.write(0, Buffer.alloc(65536, 1));
    await c1.flush();
    await d.cli(["snap", "create", "db", "--name", "s0"]);
    await c1.write(65536 * 3, Buffer.alloc(65536, 2));
    await c1.flush();
    await d.cli(["snap", "create", "db", "--name", "s1"]);
    await c1.write(65536 * 5, Buffer.alloc(100, 3));
    await c1.flush();
    await c1.close();
    await d.cli(["snap", "create", "db", "logs", "--name", "cg"]);
    await d.cli(["export", "s1", "--host", "h1"]);
    const rpc = connectArray({ endpoint: d.rpcEndpoint });
    const s0 = (await rpc.listSnapshots({})).snapshots.find((s) => s.name === "s0")?.snapshotId ?? "";
    const s1 = (await rpc.listSnapshots({})).snapshots.find((s) => s.name === "s1")?.snapshotId ?? "";
    await rpc.deleteSnapshot({ snapshotId: s0 });
    const diffBefore = await collect(rpc.getChangedBlocks({ baseSnapshotId: s0, targetSnapshotId: s1 }));
    rpc.close();
    const before = await state(d.rpcEndpoint);
    await d.stop();
    d = undefined;

    d = await startArrayDaemon(dir);
    expect(await state(d.rpcEndpoint)).toEqual(before);
    const rpc2 = connectArray({ endpoint: d.rpcEndpoint });
    const diffAfter = await collect(rpc2.getChangedBlocks({ baseSnapshotId: s0, targetSnapshotId: s1 }));
    expect(diffAfter).toEqual(diffBefore);
    expect(diffAfter[0]?.blockMetadata.map((b) => [b.byteOffset, b.sizeBytes])).toEqual([[65536 * 3, 65536]]);
    const live = await collect(rpc2.getChangedBlocks({ baseSnapshotId: s1, lunId: (await rpc2.getLun({ name: "db" })).lunId }));
    expect(live[0]?.blockMetadata.map((b) => [b.byteOffset, b.sizeBytes])).toEqual([[65536 * 5, 65536]]);
    rpc2.close();
    const c2 = await NbdClient.connect(d.uri("lun/db"));
    expect((await c2.read(0, 65536)).equals(Buffer.alloc(65536, 1))).toBe(true);
    expect((await c2.read(65536 * 3, 65536)).equals(Buffer.alloc(65536, 2))).toBe(true);
    expect((await c2.read(65536 * 5, 100)).equals(Buffer.alloc(100, 3))).toBe(true);
    await c2.close();
  });

  it("SIGTERM drains in-flight writes and flushes: every acknowledged write is there after restart", async () => {
    const dir2 = join(tmp.dir, "array-drain");
    const d1 = await startArrayDaemon(dir2);
    await d1.cli(["lun", "create", "busy", "64M"]);
    const c = await NbdClient.connect(d1.uri("lun/busy"));
    let acked = 0;
    const writes = Array.from({ length: 400 }, (_, i) =>
      c.write(i * 65536, Buffer.alloc(65536, (i % 250) + 1)).then(() => {
        acked++;
        return i;
      }),
    );
    while (acked < 20) await new Promise((r) => setTimeout(r, 1));
    const stopping = d1.stop();
    const results = await Promise.allSettled(writes);
    await stopping;
    await c.close().catch(() => undefined);
    const ok = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    expect(ok.length).toBeGreaterThanOrEqual(20);
    const d2 = await startArrayDaemon(dir2);
    try {
      const r = await NbdClient.connect(d2.uri("lun/busy"));
      for (const i of ok) expect((await r.read(i * 65536, 65536)).equals(Buffer.alloc(65536, (i % 250) + 1))).toBe(true);
      await r.close();
    } finally {
      await d2.stop();
    }
  });
});
