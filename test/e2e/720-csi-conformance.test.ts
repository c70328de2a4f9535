/**
 * `sanbox conformance --csi` against a real `sanbox array serve`: every check
 * passes with VARIABLE_LENGTH and with FIXED_LENGTH block metadata, with
 * parseable JUnit and nothing left behind; and with each TEST-ONLY csi-*
 * failpoint (and the array's group-skew fault, which the CSI group cut goes
 * through too) the suite exits 1 and the failed check is the one that names
 * the broken rule, in the JSON report and in the JUnit XML.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startArrayDaemon } from "../support/array-daemon.js";
import { parseReport, parseXml } from "../support/conformance-report.js";
import { runSanbox } from "../support/sanbox-cli.js";

const TOKEN = "csi-conformance-token-0123456789";

describe("sanbox conformance --csi", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "sanbox-720-"));
    writeFileSync(join(dir, "token"), `${TOKEN}\n`);
    writeFileSync(join(dir, "secrets.json"), JSON.stringify({ user: "conformance", password: "not-logged" }));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const mode of ["variable", "fixed"] as const) {
    it(`passes against our array with ${mode}-length block metadata, writes parseable JUnit, and leaves nothing behind`, async () => {
      const array = await startArrayDaemon(join(dir, mode), ["--token-file", join(dir, "token"), "--csi-block-metadata", mode], { SANBOX_LOG: "debug" });
      try {
        const junit = join(dir, `${mode}.xml`);
        const r = await runSanbox(["conformance", "--csi", array.rpcEndpoint, "--token", TOKEN, "--secrets-file", join(dir, "secrets.json"), "--secret", "token=also-not-logged", "--junit", junit, "--json", "--idempotent-count", "2"], { SANBOX_LOG: "debug" });
        const report = parseReport(r.stdout);
        const failed = report.results.filter((x) => x.status === "failed");
        expect(failed, JSON.stringify(failed, null, 2)).toEqual([]);
        expect(r.exitCode).toBe(0);
        const passed = report.results.filter((x) => x.status === "passed").map((x) => x.id);
        for (const id of ["csi.delta.no-overlap", "csi.delta.first-after-start", "csi.delta.capacity-constant", "csi.delta.max-results", "csi.delta.resume", "csi.allocated.superset-of-delta", "csi.delta.apply", "csi.group.idempotent", "csi.group.members", "csi.group.delete-gone-ok", "csi.group.atomic", "csi.errors.get-metadata-delta.negative-offset"]) {
          expect(passed).toContain(id);
        }
        // fixed-equal runs only on a FIXED_LENGTH stream; elsewhere it is not applicable.
        const fixed = report.results.find((x) => x.id === "csi.delta.fixed-equal");
        expect(fixed?.status).toBe(mode === "fixed" ? "passed" : "skipped");
        expect(report.results.filter((x) => x.status === "skipped").map((x) => x.id)).toEqual(mode === "fixed" ? [] : ["csi.delta.fixed-equal"]);
        const elements = parseXml(readFileSync(junit, "utf8"));
        expect(elements[0]?.name).toBe("testsuites");
        expect(elements.filter((e) => e.name === "testcase")).toHaveLength(report.results.length);
        // Secrets are sent, never logged: not by the checker at debug level, not by the array.
        for (const log of [r.stderr, array.stderr()]) expect(log).not.toMatch(/not-logged/);
        const luns = JSON.parse((await array.cli(["lun", "list", "--json"], { env: { SANBOX_TOKEN: TOKEN } })).stdout) as unknown;
        expect(luns).toEqual([]);
      } finally {
        await array.stop();
      }
    });
  }

  it("prints the human table, nothing at the endpoint fails csi.identity.reachable (exit 1), two targets are a usage error (exit 2)", async () => {
    const array = await startArrayDaemon(join(dir, "human"), []);
    try {
      const ok = await runSanbox(["conformance", "--csi", array.rpcEndpoint, "--only", "^csi\\.identity\\."]);
      expect(ok.exitCode).toBe(0);
      expect(ok.stdout).toMatch(/PASS {2}csi\.identity\.capabilities/);
      expect(ok.stdout).toMatch(/2 passed, 0 failed, 0 skipped/);
      const none = await runSanbox(["conformance", "--csi", `unix:${join(dir, "no-such.sock")}`]);
      expect(none.exitCode).toBe(1);
      expect(none.stdout).toMatch(/FAIL {2}csi\.identity\.reachable/);
      const usage = await runSanbox(["conformance", "--csi", array.rpcEndpoint, "--endpoint", array.rpcEndpoint]);
      expect(usage.exitCode).toBe(2);
    } finally {
      await array.stop();
    }
  });
});

/** Each failpoint, the array's extra flags, the checks run, and the check that must fail. */
const FAILPOINTS: readonly { name: string; args?: string[]; only: string; check: string; detail: RegExp }[] = [
  { name: "csi-delta-overlap", only: "^csi\\.delta\\.no-overlap$", check: "csi.delta.no-overlap", detail: /starts before the end of the previous tuple/ },
  { name: "csi-delta-before-start", only: "^csi\\.delta\\.first-after-start$", check: "csi.delta.first-after-start", detail: /ends at or before starting_offset/ },
  { name: "csi-capacity-changes", only: "^csi\\.delta\\.capacity-constant$", check: "csi.delta.capacity-constant", detail: /volume_capacity_bytes/ },
  { name: "csi-max-results-exceeded", only: "^csi\\.delta\\.max-results$", check: "csi.delta.max-results", detail: /max_results was/ },
  { name: "csi-negative-offset-code", only: "^csi\\.errors\\.get-metadata-delta\\.negative-offset$", check: "csi.errors.get-metadata-delta.negative-offset", detail: /expected OUT_OF_RANGE/ },
  { name: "csi-group-not-idempotent", only: "^csi\\.group\\.idempotent$", check: "csi.group.idempotent", detail: /made group/ },
  { name: "csi-group-delete-not-found", only: "^csi\\.group\\.delete-gone-ok$", check: "csi.group.delete-gone-ok", detail: /again/ },
  { name: "csi-delta-drop-extent", only: "^csi\\.delta\\.apply$", check: "csi.delta.apply", detail: /differs from S2 at byte/ },
  { name: "csi-fixed-unequal", args: ["--csi-block-metadata", "fixed"], only: "^csi\\.delta\\.fixed-equal$", check: "csi.delta.fixed-equal", detail: /FIXED_LENGTH stream/ },
  { name: "group-skew", only: "^csi\\.group\\.atomic$", check: "csi.group.atomic", detail: /cut at different moments/ },
];

describe("sanbox conformance --csi catches a broken CSI service (TEST-ONLY failpoints)", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "sanbox-720fp-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const fp of FAILPOINTS) {
    it(`${fp.name}: ${fp.check} fails, in the report and in the JUnit XML`, async () => {
      const array = await startArrayDaemon(join(dir, fp.name), fp.args ?? [], { SANBOX_FAILPOINTS: fp.name });
      try {
        expect(array.stderr()).toMatch(/TEST-ONLY failpoints enabled/);
        const junit = join(dir, `${fp.name}.xml`);
        const r = await runSanbox(["conformance", "--csi", array.rpcEndpoint, "--only", fp.only, "--json", "--junit", junit]);
        expect(r.exitCode).toBe(1);
        const report = parseReport(r.stdout);
        const hit = report.results.find((x) => x.id === fp.check);
        expect(hit?.status, JSON.stringify(report.results, null, 2)).toBe("failed");
        expect(hit?.detail).toMatch(fp.detail);
        const failedCases = parseXml(readFileSync(junit, "utf8"));
        const at = failedCases.findIndex((e) => e.name === "testcase" && e.attrs.name === fp.check);
        expect(failedCases[at + 1]?.name).toBe("failure");
      } finally {
        await array.stop();
      }
    });
  }
});
