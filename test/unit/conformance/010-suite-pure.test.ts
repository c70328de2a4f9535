/**
 * The pure parts of the conformance suite and the fault proxy: extent coverage,
 * --only matching, report renderings, and the mapping of fault-proxy options
 * onto nbdkit's filters.
 */
import { describe, expect, it } from "vitest";
import { faultProxyOptions, parseErrorOps, parseErrorRate } from "../../../cli/fault-proxy-command.js";
import { faultFrontOptions } from "../../../src/nbdkit/fault-front.js";
import { sameRanges, uncovered, union } from "../../../plugin/conformance/extents.js";
import { formatHuman, formatJunit } from "../../../plugin/conformance/report.js";
import { matcher, type ConformanceReport } from "../../../plugin/conformance/runner.js";
import { parseFailpoints } from "../../../src/failpoints.js";

describe("extent coverage", () => {
  it("unions, finds gaps, and compares coverage", () => {
    const u = union([
      { offset: 10, length: 5 },
      { offset: 0, length: 4 },
      { offset: 4, length: 2 },
      { offset: 12, length: 10 },
    ]);
    expect(u).toEqual([
      { offset: 0, length: 6 },
      { offset: 10, length: 12 },
    ]);
    expect(uncovered(u, 0, 30)).toEqual([
      { offset: 6, length: 4 },
      { offset: 22, length: 8 },
    ]);
    expect(uncovered(u, 11, 5)).toEqual([]);
    expect(sameRanges([{ offset: 0, length: 2 }, { offset: 2, length: 2 }], [{ offset: 0, length: 4 }])).toBe(true);
    expect(sameRanges([{ offset: 0, length: 2 }], [{ offset: 0, length: 4 }])).toBe(false);
  });
});

describe("--only", () => {
  it("matches check ids by regular expression, or by substring when the pattern is not one", () => {
    expect(matcher("^cbt\\.")("cbt.apply-delta")).toBe(true);
    expect(matcher("^cbt\\.")("allocated.extents")).toBe(false);
    expect(matcher("group")("snapshot.group.lifecycle")).toBe(true);
    expect(matcher("[")("a[b")).toBe(true);
    expect(matcher(undefined)("x")).toBe(true);
  });
});

const report: ConformanceReport = {
  target: { endpoint: "unix:/x", vendor: "v", model: "m", contractVersion: "1.0.0" },
  startedAt: "2026-01-01T00:00:00.000Z",
  durationMs: 1234,
  passed: 1,
  failed: 1,
  skipped: 1,
  results: [
    { area: "cbt", id: "cbt.a", rule: "r1", status: "passed", durationMs: 5 },
    { area: "cbt", id: "cbt.b", rule: 'extents <ascending> & "non-overlapping"', status: "failed", durationMs: 7, detail: "got [0, +1) & \u0001 <bad>" },
    { area: "nbd", id: "nbd.c", rule: "r3", status: "skipped", durationMs: 0, detail: "no TRIM" },
  ],
};

describe("report renderings", () => {
  it("JUnit: one suite per area, escaped rule and evidence, control characters dropped", () => {
    const x = formatJunit(report);
    expect(x).toContain('<testsuites name="sanbox conformance" tests="3" failures="1" skipped="1"');
    expect(x).toContain('<testsuite name="cbt" tests="2" failures="1"');
    expect(x).toContain('<failure message="rule broken: extents &lt;ascending&gt; &amp; &quot;non-overlapping&quot;" type="ContractViolation">got [0, +1) &amp; ? &lt;bad&gt;</failure>');
    expect(x).toContain('<skipped message="no TRIM"/>');
    expect(x).not.toMatch(/[\u0000-\u0008]/);
  });
  it("human lines name the broken rule under a failure and end with the counts", () => {
    const h = formatHuman(report);
    expect(h).toMatch(/FAIL {2}cbt\.b/);
    expect(h).toMatch(/rule broken: extents <ascending>/);
    expect(h).toMatch(/SKIP {2}nbd\.c {2}\(no TRIM\)/);
    expect(h.trimEnd().split("\n").at(-1)).toBe("1 passed, 1 failed, 1 skipped (1.2 s)");
  });
});

describe("fault-proxy options", () => {
  it("parses error rates and operations", () => {
    expect(parseErrorRate("1%")).toBe("1%");
    expect(parseErrorRate("0.25")).toBe("25%");
    expect(parseErrorRate("1/100")).toBe("1%");
    expect(() => parseErrorRate("1.5")).toThrow(/--error-rate/);
    expect(() => parseErrorRate("x")).toThrow(/--error-rate/);
    expect(parseErrorOps("read,write,read,block-status")).toEqual(["pread", "pwrite", "extents"]);
    expect(() => parseErrorOps("read,nope")).toThrow(/unknown operation "nope"/);
  });
  it("maps onto nbdkit's nbd plugin with the error, delay and rate filters (rate in bits)", () => {
    const o = faultProxyOptions("nbd+unix:///lun/a?socket=/s", { errorRate: "10%", errorOps: "read", delayRead: 5, delayWrite: 7, rate: "1M", unix: "/tmp/p.sock" });
    const k = faultFrontOptions(o);
    expect(k.plugin).toBe("nbd");
    expect(k.pluginArgs).toEqual({ uri: "nbd+unix:///lun/a?socket=/s" });
    expect(k.filters).toEqual(["error", "delay", "rate"]);
    expect(k.filterArgs).toMatchObject({ "error-pread": "EIO", "error-pread-rate": "10%", rdelay: "5ms", wdelay: "7ms", "delay-zero": "7ms", "delay-trim": "7ms", rate: String(8 * 1024 * 1024) });
    expect(k.unixSocket).toBe("/tmp/p.sock");
    expect(faultFrontOptions(faultProxyOptions("nbd://h/x", {})).filters).toEqual([]);
    expect(faultFrontOptions(faultProxyOptions("nbd+unix:///?socket=/a", { allExports: true })).pluginArgs).toEqual({ uri: "nbd+unix:///?socket=/a", "dynamic-export": "true" });
    expect(() => faultProxyOptions("nbd://h/x", { errorOps: "read" })).toThrow(/needs --error-rate/);
    expect(() => faultProxyOptions("http://h/x", {})).toThrow();
  });
});

describe("failpoints", () => {
  it("are off by default and refuse unknown names", () => {
    expect(parseFailpoints(undefined).size).toBe(0);
    expect([...parseFailpoints(" cbt-drop-zero, group-skew ,")]).toEqual(["cbt-drop-zero", "group-skew"]);
    expect(() => parseFailpoints("cbt-drop-zero,bogus")).toThrow(/unknown failpoint "bogus"/);
  });
});
