/**
 * Two rules about who else is there. `backup run` against a daemon that is not
 * running fails at once with one line (no retries) and creates nothing: no
 * repository directory. A real `backup serve` process holds its point: `backup
 * prune` keeps it and says so, `backup delete` refuses it naming the serve;
 * once the serve stops, prune removes it.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { obj, sanboxBackup, spawnBackup } from "../support/backup-cli.js";
import { startVmFixture, type VmFixture } from "../support/vm-fixture.js";

describe("backup run start-up and backup serve's hold", () => {
  let fx: VmFixture;
  beforeAll(async () => {
    fx = await startVmFixture("sanbox-e2e-662-", { seed: 662, rate: 1000, warmUp: 50 });
  });
  afterAll(async () => fx?.stop());

  it("a stopped array or hypervisor: one line, exit 1, no repository directory, no retries", async () => {
    const cases = [
      { what: "array", args: ["--array", `unix:${join(fx.dir, "no-array.sock")}`, "--hypervisor", fx.hv.endpoint], hint: "sanbox array serve" },
      { what: "hypervisor", args: ["--array", fx.d.rpcEndpoint, "--hypervisor", `unix:${join(fx.dir, "no-hv.sock")}`], hint: "sanbox hypervisor serve" },
    ];
    for (const c of cases) {
      const repoDir = join(fx.dir, `repo-${c.what}`);
      const started = Date.now();
      const r = await sanboxBackup(["backup", "run", "vm1", "--repo", repoDir, ...c.args]);
      expect(r.exitCode, r.stderr).toBe(1);
      const lines = r.stderr.split("\n").filter((l) => l !== "");
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^sanbox: UNAVAILABLE: nothing answers at .*; start it with `/);
      expect(lines[0]).toContain(c.hint);
      expect(r.stderr).not.toMatch(/retry/);
      expect(existsSync(repoDir), `${c.what} down: the repository directory was created`).toBe(false);
      // No backoff was waited out (5 attempts would take over a second).
      expect(Date.now() - started).toBeLessThan(5000);
    }
  });

  it("prune keeps a point a real backup serve serves, and says so; delete refuses it; after the serve stops, prune removes it", async () => {
    const repoDir = join(fx.dir, "repo");
    const run = async (): Promise<string> => {
      const r = await sanboxBackup(["backup", "run", "vm1", "--repo", repoDir, "--array", fx.d.rpcEndpoint, "--hypervisor", fx.hv.endpoint, "--json"]);
      expect(r.exitCode, r.stderr).toBe(0);
      return String(obj(JSON.parse(r.stdout))["point"]);
    };
    const first = await run();
    const second = await run();
    const serve = spawnBackup(["backup", "serve", first, "--repo", repoDir, "--unix", join(fx.dir, "serve.sock")]);
    await new Promise<void>((res, rej) => {
      let out = "";
      serve.stdout.on("data", (b: Buffer) => {
        out += b.toString();
        if (out.includes("\n")) res();
      });
      void serve.then(() => rej(new Error("backup serve exited")));
    });
    try {
      const pruned = await sanboxBackup(["backup", "prune", "--keep", "1", "--repo", repoDir]);
      expect(pruned.exitCode, pruned.stderr).toBe(0);
      expect(pruned.stdout).toContain(`kept ${first}: it is being served by \`backup serve\` (process ${serve.pid ?? "?"})`);
      expect(pruned.stdout).toContain("removed 0 point(s)");
      const deleted = await sanboxBackup(["backup", "delete", first, "--repo", repoDir]);
      expect(deleted.exitCode).toBe(1);
      expect(deleted.stderr).toContain(`point ${first} is being served by \`backup serve\` (process ${serve.pid ?? "?"})`);
      const list = JSON.parse((await sanboxBackup(["backup", "list", "--repo", repoDir, "--json"])).stdout) as unknown[];
      expect(list.map((p) => obj(p)["id"])).toEqual([first, second]);
      expect((await sanboxBackup(["backup", "verify", first, "--repo", repoDir, "--no-oracle"])).exitCode).toBe(0);
    } finally {
      serve.kill("SIGTERM");
      await serve;
    }
    const after = JSON.parse((await sanboxBackup(["backup", "prune", "--keep", "1", "--repo", repoDir, "--json"])).stdout) as Record<string, unknown>;
    expect(after["removedPoints"]).toEqual([first]);
    expect(after["servedPoints"]).toEqual([]);
  });
});
