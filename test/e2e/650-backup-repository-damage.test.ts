/**
 * The v2 repository under damage, driven as a user would: one byte flipped in
 * a pack fails `restore` with CORRUPT naming the chunk, makes `backup serve`
 * answer EIO for that range only (a real NBD client), and the next backup
 * heals it, after which verify and check are clean. Then foreign entries under
 * points/ (a stray file, an empty directory, a truncated point.json) are
 * listed as DAMAGED while every command works on the healthy points, and
 * `check --repair` removes them. A version 1 repository is refused.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdClient } from "../../src/nbd/client.js";
import { packPath } from "../../plugin/backup/repository/chunk-store.js";
import { Repository } from "../../plugin/backup/repository/repository.js";
import type { ArrayDaemon } from "../support/array-daemon.js";
import type { HypervisorDaemon } from "../support/hypervisor-daemon.js";
import { obj, sanboxBackup, spawnBackup } from "../support/backup-cli.js";
import { startVmFixture, type VmFixture } from "../support/vm-fixture.js";

describe("backup repository damage: verified reads, EIO, healing, local damage, check --repair", () => {
  let fx: VmFixture;
  let tmp: { dir: string };
  let d: ArrayDaemon;
  let hv: HypervisorDaemon;
  let repoDir: string;

  const run = async (): Promise<Record<string, unknown>> => {
    const r = await sanboxBackup(["backup", "run", "vm1", "--repo", repoDir, "--array", d.rpcEndpoint, "--hypervisor", hv.endpoint, "--json"]);
    if (r.exitCode !== 0) throw new Error(`backup run failed: ${r.stderr}`);
    return obj(JSON.parse(r.stdout));
  };
  const cli = async (args: string[]): Promise<string> => {
    const r = await sanboxBackup([...args, "--repo", repoDir]);
    if (r.exitCode !== 0) throw new Error(`sanbox ${args.join(" ")} failed (${r.exitCode}): ${r.stderr}`);
    return r.stdout;
  };

  beforeAll(async () => {
    fx = await startVmFixture("sanbox-e2e-650-", { seed: 650, warmUp: 200 });
    ({ d, hv } = fx);
    tmp = { dir: fx.dir };
    repoDir = join(fx.dir, "repo");
    await run();
    // From here the disks do not change, so the next backup produces the same chunks again.
    await hv.cli(["vm", "stop", "vm1"]);
  }, 60_000);
  afterAll(async () => {
    await fx?.stop();
  });

  it("uses the array's CBT granularity as the chunk size", () => {
    const repoJson = obj(JSON.parse(readFileSync(join(repoDir, "repo.json"), "utf8")));
    expect(repoJson["version"]).toBe(2);
    expect(repoJson["chunkSize"]).toBe(64 * 1024);
  });

  it("a flipped byte: restore fails CORRUPT naming the chunk, serve answers EIO for that range only, the next backup heals", async () => {
    const s = await run();
    const pointId = String(s["point"]);
    const repo = await Repository.open(repoDir);
    const p = await repo.get(pointId);
    const map = await repo.index(p, "vm1");
    expect(map.count).toBeGreaterThan(1);
    const victim = map.hexAt(0);
    const chunkNo = map.numberAt(0);
    const other = map.numberAt(map.count - 1);
    const loc = repo.chunks.locate(victim);
    if (loc === undefined) throw new Error("victim not in the index");
    const path = packPath(join(repoDir, "packs"), loc.pack);
    const fd = openSync(path, "r+");
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, loc.offset + Math.floor(loc.stored / 2));
    b[0] = (b[0] as number) ^ 0x5a;
    writeSync(fd, b, 0, 1, loc.offset + Math.floor(loc.stored / 2));
    closeSync(fd);

    const r = await sanboxBackup(["restore", pointId, "--disk", "vm1", "--to", join(tmp.dir, "vm1.raw"), "--repo", repoDir]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain("CORRUPT");
    expect(r.stderr).toContain(victim);
    expect(r.stderr).toContain(`pack ${loc.pack} offset ${loc.offset}`);
    expect(r.stderr).toContain(`point ${pointId} disk vm1 bytes [${chunkNo * 65536}, `);

    const sock = join(tmp.dir, "serve.sock");
    const serve = spawnBackup(["backup", "serve", pointId, "--repo", repoDir, "--unix", sock]);
    let serveErr = "";
    serve.stderr.on("data", (x: Buffer) => (serveErr += x.toString()));
    const uri = await new Promise<string>((res, rej) => {
      let out = "";
      serve.stdout.on("data", (x: Buffer) => {
        out += x.toString();
        const line = out.split("\n").find((l) => l.startsWith("vm1 "));
        if (line !== undefined) res(line.split(" ")[1] ?? "");
      });
      void serve.then(() => rej(new Error(`backup serve exited: ${serveErr}`)));
    });
    try {
      const c = await NbdClient.connect(uri);
      try {
        await expect(c.read(chunkNo * 65536, 4096)).rejects.toMatchObject({ errno: "EIO" });
        // The same connection goes on; other ranges read.
        const ok = await c.read(other * 65536, 4096);
        expect(ok.length).toBe(4096);
      } finally {
        await c.close();
      }
    } finally {
      serve.kill("SIGTERM");
      await serve;
    }
    expect(serveErr).toContain(victim);

    const v = await sanboxBackup(["backup", "verify", pointId, "--repo", repoDir]);
    expect(v.exitCode).toBe(1);
    expect((await sanboxBackup(["backup", "check", "--repo", repoDir])).exitCode).toBe(1);

    // The next backup sees the damaged parent, reads in full and stores a good copy in a new pack.
    const healed = await run();
    const again = await Repository.open(repoDir);
    const newLoc = again.chunks.locate(victim);
    expect(newLoc?.pack).not.toBe(loc.pack);
    expect(await cli(["backup", "verify", String(healed["point"])])).toContain("0 bad");
    // The old point references the same hash: it now reads the good copy.
    expect(await cli(["backup", "verify", pointId])).toContain("0 bad");
    const restored = join(tmp.dir, "vm1-again.raw");
    await cli(["restore", pointId, "--disk", "vm1", "--to", restored]);
    const img = await again.openImage(await again.get(pointId), "vm1");
    expect(readFileSync(restored).equals(await img.read(0, img.size))).toBe(true);
    const check = obj(JSON.parse(await cli(["backup", "check", "--json"])));
    expect(check["problems"]).toEqual([]);
    expect(check["clean"]).toBe(true);
    // The superseded bad copy is garbage, not a problem; prune keeps the repository clean.
    expect(obj(check["garbage"])["blobs"]).toBeGreaterThan(0);
    await cli(["backup", "prune", "--keep", "5"]);
    expect(existsSync(path)).toBe(true);
    expect(obj(JSON.parse(await cli(["backup", "check", "--json"])))["clean"]).toBe(true);
  }, 120_000);

  it("damaged entries under points/ stay local: listed DAMAGED, the rest works, check --repair removes them", async () => {
    const points = join(repoDir, "points");
    writeFileSync(join(points, "stray.txt"), "hello");
    mkdirSync(join(points, "vm1-empty"));
    const victim = (await (await Repository.open(repoDir)).list("vm1"))[0];
    if (victim === undefined) throw new Error("no point");
    const pj = join(points, victim.id, "point.json");
    const text = readFileSync(pj, "utf8");
    writeFileSync(pj, text.slice(0, Math.floor(text.length / 2)));

    const list = JSON.parse(await cli(["backup", "list", "--json"])) as Record<string, unknown>[];
    const byId = new Map(list.map((e) => [String(e["id"]), e]));
    expect(byId.get("stray.txt")).toMatchObject({ status: "damaged", reason: expect.stringContaining("stray file") as string });
    expect(byId.get("vm1-empty")).toMatchObject({ status: "damaged", reason: expect.stringContaining("empty directory") as string });
    expect(byId.get(victim.id)).toMatchObject({ status: "damaged", reason: expect.stringContaining("not JSON") as string });
    const ok = list.filter((e) => e["status"] === "ok").map((e) => String(e["id"]));
    expect(ok.length).toBeGreaterThan(0);
    expect(await cli(["backup", "list"])).toContain("DAMAGED");
    const good = ok.at(-1) ?? "";
    expect(await cli(["backup", "show", good])).toContain(`point ${good}`);
    expect(await cli(["backup", "verify", good])).toContain("0 bad");
    await cli(["restore", good, "--disk", "vm1", "--to", join(tmp.dir, "good.raw")]);
    expect((await sanboxBackup(["backup", "show", victim.id, "--repo", repoDir])).stderr).toContain("damaged");
    const s = await run();
    expect(s["kind"]).toBe("incremental");
    await cli(["backup", "prune", "--keep", "10"]);

    const check = await sanboxBackup(["backup", "check", "--repo", repoDir, "--json"]);
    expect(check.exitCode).toBe(1);
    const names = (obj(JSON.parse(check.stdout))["problems"] as Record<string, unknown>[]).map((x) => x["name"]);
    expect(names).toEqual(expect.arrayContaining(["stray.txt", "vm1-empty", victim.id]));
    const repaired = obj(JSON.parse(await cli(["backup", "check", "--repair", "--json"])));
    expect(repaired["clean"]).toBe(true);
    expect(await cli(["backup", "check"])).toMatch(/^clean/);
    const after = JSON.parse(await cli(["backup", "list", "--json"])) as Record<string, unknown>[];
    expect(after.every((e) => e["status"] === "ok")).toBe(true);
    expect(after.map((e) => e["id"])).not.toContain(victim.id);
    // delete removes one point.
    expect(await cli(["backup", "delete", String(s["point"])])).toContain("deleted");
  }, 120_000);

  it("refuses a version 1 repository, naming its version and what to do", async () => {
    const old = join(tmp.dir, "v1");
    mkdirSync(join(old, "chunks"), { recursive: true });
    writeFileSync(join(old, "repo.json"), JSON.stringify({ version: 1, id: "0badc0de", chunkSize: 1048576 }));
    const r = await sanboxBackup(["backup", "list", "--repo", old]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain("UNSUPPORTED");
    expect(r.stderr).toContain("version 1 backup repository");
    expect(r.stderr).toContain("new --repo directory");
  });
});
