// The RBD tier's throwaway cluster: scripts/ceph-cluster.mjs starts a usable pool,
// prints the CEPH_CONF, and tears down by the PIDs it recorded, on stop and on failure.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { alive, readPids, runClusterScript, startCephCluster } from "../support/ceph-cluster.js";

const root = mkdtempSync(join(tmpdir(), "sanbox-ceph-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("scripts/ceph-cluster.mjs", () => {
  it("starts a single-node cluster with an rbd pool, and stop kills exactly the recorded PIDs", async () => {
    const dir = join(root, "c1");
    const c = await startCephCluster(dir);
    try {
      expect(c.conf).toBe(join(dir, "ceph.conf"));
      expect(c.pids).toHaveLength(2);
      for (const p of c.pids) expect(alive(p)).toBe(true);
      const env = { CEPH_CONF: c.conf };
      await execa("rbd", ["create", "--size", "16M", `${c.pool}/probe`], { env });
      const ls = await execa("rbd", ["ls", c.pool, "--format", "json"], { env });
      expect(JSON.parse(String(ls.stdout))).toEqual(["probe"]);
      const again = await runClusterScript(["start", dir]);
      expect(again.exitCode).toBe(1);
      expect(again.stderr).toMatch(/already running/);
    } finally {
      await c.stop();
    }
    for (const p of c.pids) expect(alive(p)).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });

  it("fails within its timeout naming the step, and kills what it had started", async () => {
    const dir = join(root, "c2");
    const t0 = Date.now();
    // 2 s is enough for the monitor to start, never for the OSD and the pool.
    const r = await runClusterScript(["start", dir, "--timeout", "2"]);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/start failed at [a-z ]+: .*timed out/);
    const pids = readPids(dir);
    expect(pids.length).toBeGreaterThan(0);
    for (const p of pids) expect(alive(p)).toBe(false);
  });

  it("refuses to stop a directory with no cluster", async () => {
    const r = await runClusterScript(["stop", join(root, "nothing")]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/no cluster in/);
  });
});
