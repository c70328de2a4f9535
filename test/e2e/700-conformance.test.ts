/**
 * `sanbox conformance` against our array (everything passes), its NBD area
 * against plain `nbdkit memory` (it tests the protocol, not our server), and
 * against arrays started with each TEST-ONLY failpoint: the suite must fail,
 * and the failing check must be the one that names the broken rule.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Nbdkit } from "../../src/nbdkit/nbdkit.js";
import { startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { runSanbox } from "../support/sanbox-cli.js";
import { requireTool } from "../support/tools.js";
import { parseReport, parseXml } from "../support/conformance-report.js";

describe("sanbox conformance", () => {
  let dir: string;
  let array: ArrayDaemon;
  const token = "conformance-token-0123456789";

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "sanbox-700-"));
    writeFileSync(join(dir, "token"), `${token}\n`);
    array = await startArrayDaemon(join(dir, "array"), ["--token-file", join(dir, "token")]);
  });
  afterAll(async () => {
    await array.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("passes every check against our array, writes parseable JUnit, and leaves nothing behind", async () => {
    const junit = join(dir, "junit.xml");
    const r = await runSanbox(["conformance", "--endpoint", array.rpcEndpoint, "--token", token, "--junit", junit, "--json", "--idempotent-count", "2"]);
    const report = parseReport(r.stdout);
    const failed = report.results.filter((x) => x.status === "failed");
    expect(failed, JSON.stringify(failed, null, 2)).toEqual([]);
    expect(r.exitCode).toBe(0);
    expect(report.passed).toBeGreaterThanOrEqual(45);
    expect(report.skipped).toBe(0); // our array claims every capability, and the token check runs
    const ids = report.results.map((x) => x.id);
    for (const id of ["identity.array-info", "lun.get-unknown", "group.write-order", "cbt.apply-delta", "cbt.starting-offset", "nbd.block-status", "auth.token", "auth.wrong-psk", "revert.content", "allocated.extents"]) {
      expect(ids).toContain(id);
    }
    const elements = parseXml(readFileSync(junit, "utf8"));
    const root = elements[0];
    expect(root?.name).toBe("testsuites");
    expect(root?.attrs.tests).toBe(String(report.results.length));
    expect(root?.attrs.failures).toBe("0");
    expect(elements.filter((e) => e.name === "testcase")).toHaveLength(report.results.length);
    // The resource tracker deleted everything the suite created.
    const luns = (await array.cli(["lun", "list", "--json"], { env: { SANBOX_TOKEN: token } })).stdout;
    expect(JSON.parse(luns)).toEqual([]);
    const hosts = (await array.cli(["host", "list", "--json"], { env: { SANBOX_TOKEN: token } })).stdout;
    expect(JSON.parse(hosts)).toEqual([]);
  });

  it("prints human lines by default and fails on a wrong token (exit 1, naming the broken rule)", async () => {
    const ok = await runSanbox(["conformance", "--endpoint", array.rpcEndpoint, "--token", token, "--only", "^identity\\."]);
    expect(ok.exitCode).toBe(0);
    expect(ok.stdout).toMatch(/PASS {2}identity\.array-info/);
    expect(ok.stdout).toMatch(/3 passed, 0 failed, 0 skipped/);
    const bad = await runSanbox(["conformance", "--endpoint", array.rpcEndpoint, "--token", "wrong", "--only", "^identity\\."]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stdout).toMatch(/FAIL {2}identity\.reachable/);
    expect(bad.stdout).toMatch(/rule broken: GetArrayInfo answers/);
  });

  it("runs the NBD data-path area against plain nbdkit memory", async () => {
    requireTool("nbdkit");
    const kit = await Nbdkit.start({ plugin: "memory", pluginArgs: { size: "64M" } });
    try {
      const r = await runSanbox(["conformance", "--nbd-only", kit.uri, "--json"]);
      const report = parseReport(r.stdout);
      expect(report.results.filter((x) => x.status === "failed")).toEqual([]);
      expect(r.exitCode).toBe(0);
      const passed = report.results.filter((x) => x.status === "passed").map((x) => x.id);
      for (const id of ["nbd.handshake", "nbd.read-write", "nbd.flush-fua", "nbd.trim", "nbd.zero", "nbd.block-status", "nbd.meta-context", "nbd.errors", "nbd.multi-conn"]) expect(passed).toContain(id);
      // Only the checks that need the control plane are skipped.
      expect(report.results.filter((x) => x.status === "skipped").map((x) => x.id).sort()).toEqual(["nbd.read-only", "nbd.unknown-export"]);
      expect(report.results.every((x) => x.id.startsWith("nbd."))).toBe(true);
    } finally {
      await kit.stop();
    }
  });
});

/** Each failpoint, the checks run against it, and the check that must fail naming its rule. */
const FAILPOINTS: readonly { name: string; only: string; check: string; rule: RegExp; detail: RegExp }[] = [
  { name: "cbt-drop-zero", only: "^cbt\\.(apply-delta|trim-zero-reported)$", check: "cbt.trim-zero-reported", rule: /TRIM and WRITE_ZEROES/, detail: /trimmed range .* is not reported/ },
  { name: "group-skew", only: "^group\\.write-order$", check: "group.write-order", rule: /write-order consistent/, detail: /cut at different moments/ },
  { name: "cbt-off-by-one", only: "^cbt\\.apply-delta$", check: "cbt.apply-delta", rule: /apply-delta oracle/, detail: /differs from the target at byte/ },
  { name: "snapshot-leak", only: "^snapshot\\.immutable$", check: "snapshot.immutable", rule: /snapshots are immutable/, detail: /leaked into the snapshot/ },
  { name: "wrong-status", only: "^lun\\.get-unknown$", check: "lun.get-unknown", rule: /NOT_FOUND/, detail: /expected NOT_FOUND, got IO_ERROR/ },
  { name: "cbt-ignore-starting-offset", only: "^cbt\\.starting-offset$", check: "cbt.starting-offset", rule: /starting_offset S resumes/, detail: /ends at or before starting_offset/ },
];

describe("sanbox conformance catches a broken array (TEST-ONLY failpoints)", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "sanbox-700fp-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const fp of FAILPOINTS) {
    it(`${fp.name}: ${fp.check} fails, naming the broken rule`, async () => {
      const array = await startArrayDaemon(join(dir, fp.name), [], { SANBOX_FAILPOINTS: fp.name });
      try {
        expect(array.stderr()).toMatch(/TEST-ONLY failpoints enabled.*/);
        const r = await runSanbox(["conformance", "--endpoint", array.rpcEndpoint, "--only", fp.only, "--json"]);
        expect(r.exitCode).toBe(1);
        const report = parseReport(r.stdout);
        const hit = report.results.find((x) => x.id === fp.check);
        expect(hit?.status, JSON.stringify(report.results, null, 2)).toBe("failed");
        expect(hit?.rule).toMatch(fp.rule);
        expect(hit?.detail).toMatch(fp.detail);
      } finally {
        await array.stop();
      }
    });
  }

  it("an unknown failpoint name stops the daemon at start", async () => {
    await expect(startArrayDaemon(join(dir, "unknown"), [], { SANBOX_FAILPOINTS: "no-such-failpoint" })).rejects.toThrow(/unknown failpoint "no-such-failpoint"/);
  });
});
