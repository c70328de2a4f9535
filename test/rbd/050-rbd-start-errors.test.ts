// `sanbox array serve --backend rbd` refuses to start with a clear error, never a
// hang: Ceph unreachable → fails within --ceph-timeout naming the monitor address;
// the pool missing → NO_SPACE (a LUN cannot be placed), not an I/O error.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, inject, it } from "vitest";
import { sanboxBin } from "../support/array-daemon.js";
import { tempDir, TOOL_ENV } from "../support/tools.js";

const tmp = tempDir("sanbox-rbd-050-");
afterAll(() => tmp.cleanup());

function serve(dataDir: string, args: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  return execa("node", [sanboxBin(), "array", "serve", "--data", dataDir, "--backend", "rbd", ...args], { env: TOOL_ENV, reject: false, timeout: 60_000 }).then((r) => ({
    exitCode: r.exitCode ?? -1,
    stdout: String(r.stdout),
    stderr: String(r.stderr),
    ms: Date.now() - t0,
  }));
}

describe("array serve --backend rbd: start-up errors", () => {
  it("Ceph unreachable: fails within the timeout, naming the monitor address", async () => {
    const conf = join(tmp.dir, "dead.conf");
    // Nothing listens on port 9 (discard) here: the monitor never answers.
    writeFileSync(conf, "[global]\nmon host = v2:127.0.0.1:9\nauth cluster required = none\nauth service required = none\nauth client required = none\n");
    const r = await serve(join(tmp.dir, "a1"), ["--ceph-conf", conf, "--pool", "rbd", "--ceph-timeout", "3"]);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/cannot reach Ceph within 3000 ms: monitor v2:127\.0\.0\.1:9/);
    expect(r.ms).toBeLessThan(15_000);
  });

  it("pool missing: NO_SPACE, not an I/O error", async () => {
    const r = await serve(join(tmp.dir, "a2"), ["--ceph-conf", inject("cephConf"), "--pool", "no-such-pool", "--json"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr + r.stdout).toMatch(/NO_SPACE|no space/i);
    expect(r.stderr).toMatch(/pool does not exist/);
  });

  it("flags that need --backend rbd are refused without it", async () => {
    const r = await execa("node", [sanboxBin(), "array", "serve", "--data", join(tmp.dir, "a3"), "--pool", "rbd"], { env: TOOL_ENV, reject: false });
    expect(r.exitCode).toBe(2);
    expect(String(r.stderr)).toMatch(/need --backend rbd/);
  });
});
