/**
 * What a user does with backup points, as commands: list, show, verify;
 * restore a disk to a raw file, to an NBD export and to a new array LUN; serve
 * a point over NBD (instant recovery) and `qemu-img compare` it with the
 * restored file; export it as qcow2; prune with garbage collection.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdClient } from "../../src/nbd/client.js";
import { connectArray, type ArrayClient } from "../../src/rpc/array-client.js";
import { Repository } from "../../plugin/backup/repository/repository.js";
import { startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { startHypervisor, type HypervisorDaemon } from "../support/hypervisor-daemon.js";
import { obj, sanboxBackup, spawnBackup } from "../support/backup-cli.js";
import { TOOL_ENV, tempDir } from "../support/tools.js";

describe("backup points: list, show, verify, restore, serve, export, prune", () => {
  let tmp: { dir: string; cleanup: () => void };
  let d: ArrayDaemon;
  let rpc: ArrayClient;
  let hv: HypervisorDaemon;
  let repoDir: string;
  const points: string[] = [];

  const cli = async (args: string[]): Promise<string> => {
    const r = await sanboxBackup(args);
    if (r.exitCode !== 0) throw new Error(`sanbox ${args.join(" ")} failed (${r.exitCode}): ${r.stderr}`);
    return r.stdout;
  };

  beforeAll(async () => {
    tmp = tempDir("sanbox-e2e-610-");
    repoDir = join(tmp.dir, "repo");
    d = await startArrayDaemon(join(tmp.dir, "array"));
    rpc = connectArray({ endpoint: d.rpcEndpoint });
    await rpc.createLun({ name: "ds", sizeBytes: 64 * 1024 * 1024 });
    await rpc.createLun({ name: "rdm", sizeBytes: 4 * 1024 * 1024 });
    hv = await startHypervisor(join(tmp.dir, "hv"), d.rpcEndpoint);
    await hv.cli(["vm", "create", "vm1", "--datastore", "ds", "--disk", "2M", "--disk", "1M", "--rdm", "rdm"]);
    await hv.cli(["vm", "start", "vm1", "--seed", "610"]);
    for (let i = 0; i < 2; i++) {
      while ((await hv.client.getWorkloadStatus({ vm: "vm1" })).acknowledgedSeq < 150 * (i + 1)) await sleep(10);
      const s = obj(JSON.parse(await cli(["backup", "run", "vm1", "--repo", repoDir, "--array", d.rpcEndpoint, "--hypervisor", hv.endpoint, "--json"])));
      points.push(String(s["point"]));
    }
    await hv.cli(["vm", "stop", "vm1"]);
  });
  afterAll(async () => {
    await hv?.stop();
    rpc?.close();
    await d?.stop();
    tmp?.cleanup();
  });

  it("lists, shows and verifies points", async () => {
    const list = JSON.parse(await cli(["backup", "list", "--repo", repoDir, "--json"])) as unknown[];
    expect(list.map((p) => obj(p)["id"])).toEqual(points);
    expect(list.map((p) => obj(p)["kind"])).toEqual(["full", "incremental"]);
    const show = obj(JSON.parse(await cli(["backup", "show", "vm1@latest", "--repo", repoDir, "--json"])));
    expect(show["id"]).toBe(points[1]);
    expect((show["disks"] as unknown[]).map((x) => obj(x)["name"])).toEqual(["vm1", "vm1_1", "vm1_2"]);
    expect(await cli(["backup", "show", points[0] ?? "", "--repo", repoDir])).toContain("T1 ");
    for (const p of points) expect(await cli(["backup", "verify", p, "--repo", repoDir])).toContain("oracle: consistent");
  });

  it("restores to a file, an NBD export and a new LUN; backup serve matches the restore (qemu-img compare); export qcow2", async () => {
    const repo = await Repository.open(repoDir);
    const p = await repo.get(points[1] ?? "");
    const expected = await (await repo.openImage(p, "vm1")).read(0, p.disks[0]?.size ?? 0);

    const file = join(tmp.dir, "vm1.raw");
    await cli(["restore", p.id, "--disk", "vm1", "--to", file, "--repo", repoDir]);
    expect(readFileSync(file).equals(expected)).toBe(true);

    // To a new LUN, then to an existing NBD export (that LUN's), which it overwrites.
    await cli(["restore", p.id, "--disk", "vm1_2", "--to", "lun:restored-rdm", "--repo", repoDir, "--array", d.rpcEndpoint]);
    const rdmImage = await (await repo.openImage(p, "vm1_2")).read(0, 4 * 1024 * 1024);
    const lun = await rpc.getLun({ name: "restored-rdm" });
    const exp = await rpc.createExport({ lunId: lun.lunId });
    const c = await NbdClient.connect(exp.uri);
    expect((await c.read(0, c.size)).equals(rdmImage)).toBe(true);
    await c.write(0, Buffer.alloc(65536, 0xee));
    await c.close();
    // An existing export is overwritten only with --force (restore never overwrites by accident).
    await cli(["restore", p.id, "--disk", "vm1_2", "--to", exp.uri, "--repo", repoDir, "--force"]);
    const c2 = await NbdClient.connect(exp.uri);
    expect((await c2.read(0, c2.size)).equals(rdmImage)).toBe(true);
    await c2.close();

    // Instant recovery: the point over NBD, compared by qemu-img with the restored file.
    const serve = spawnBackup(["backup", "serve", p.id, "--repo", repoDir, "--unix", join(tmp.dir, "serve.sock")]);
    const uris = await new Promise<Map<string, string>>((res, rej) => {
      let out = "";
      serve.stdout.on("data", (b: Buffer) => {
        out += b.toString();
        const lines = out.split("\n").filter((l) => l !== "");
        if (lines.length >= 3) res(new Map(lines.map((l) => l.split(" ") as [string, string])));
      });
      void serve.then(() => rej(new Error("backup serve exited")));
    });
    try {
      const uri = uris.get("vm1") ?? "";
      const cmp = await execa("qemu-img", ["compare", "-f", "raw", "-F", "raw", file, uri], { env: TOOL_ENV, reject: false });
      expect(cmp.exitCode, String(cmp.stdout) + String(cmp.stderr)).toBe(0);
      const map = await execa("nbdinfo", ["--map", uri], { env: TOOL_ENV });
      expect(String(map.stdout)).toMatch(/data|hole/);
    } finally {
      serve.kill("SIGTERM");
      await serve;
    }

    const out = join(tmp.dir, "export");
    await cli(["backup", "export", p.id, "--format", "qcow2", "--out", out, "--repo", repoDir]);
    const cmp2 = await execa("qemu-img", ["compare", "-f", "raw", "-F", "qcow2", file, join(out, "vm1.qcow2")], { env: TOOL_ENV, reject: false });
    expect(cmp2.exitCode, String(cmp2.stdout)).toBe(0);
  });

  it("prune keeps the newest point, collects unreferenced chunks, and the kept point still verifies", async () => {
    const before = (await Repository.open(repoDir)).chunks.list();
    const r = obj(JSON.parse(await cli(["backup", "prune", "--keep", "1", "--repo", repoDir, "--json"])));
    expect(r["removedPoints"]).toEqual([points[0]]);
    const after = (await Repository.open(repoDir)).chunks.list();
    expect(after.length).toBe(before.length - Number(r["freedChunks"]));
    expect(await cli(["backup", "verify", points[1] ?? "", "--repo", repoDir])).toContain("oracle: consistent");
  });
});
