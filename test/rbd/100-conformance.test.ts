// `sanbox conformance`, every area, against `sanbox array serve --backend rbd`
// on the tier's throwaway cluster: the same suite the local store passes.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { tempDir } from "../support/tools.js";

describe("conformance on the RBD backend", () => {
  let tmp: { dir: string; cleanup: () => void };
  let d: ArrayDaemon;
  const token = "rbd-tier-token-0123456789";

  beforeAll(async () => {
    tmp = tempDir("sanbox-rbd-100-");
    const tokenFile = join(tmp.dir, "token");
    writeFileSync(tokenFile, `${token}\n`);
    d = await startArrayDaemon(join(tmp.dir, "array"), ["--backend", "rbd", "--ceph-conf", inject("cephConf"), "--pool", inject("cephPool"), "--token-file", tokenFile]);
  });
  afterAll(async () => {
    await d?.stop();
    tmp?.cleanup();
  });

  it("passes every check of every area", async () => {
    const r = await d.cli(["conformance", "--json", "--token", token], { reject: false });
    const report = JSON.parse(r.stdout) as { passed: number; failed: number; skipped: number; results: { area: string; id: string; status: string; detail?: string }[] };
    const bad = report.results.filter((x) => x.status !== "passed");
    expect(bad).toEqual([]);
    expect(report.failed).toBe(0);
    expect(report.passed).toBeGreaterThanOrEqual(49);
    const areas = new Set(report.results.map((x) => x.area));
    expect([...areas].sort()).toEqual(["allocated", "auth", "cbt", "group", "identity", "lun", "nbd", "revert-clone", "snapshot"]);
    expect(r.exitCode).toBe(0);
  }, 240_000);

  it("GetArrayInfo reports the object size as the CBT granularity", async () => {
    const r = await d.cli(["array", "info", "--json"], { env: { SANBOX_TOKEN: token } });
    const text = JSON.stringify(JSON.parse(r.stdout));
    expect(text).toMatch(/"cbtGranularityBytes":65536/);
    expect(text).toMatch(/"cbtFromDeletedBase":false/);
  });
});
