/**
 * Renderings of a conformance report: human lines (default), JSON (`--json`),
 * and JUnit XML (`--junit FILE`, one <testsuite> per area, one <testcase> per
 * check, the rule as the failure message and the evidence as its text).
 */
import type { CheckResult, ConformanceReport } from "./runner.js";

export function formatHuman(r: ConformanceReport): string {
  const lines: string[] = [];
  const who = r.target.endpoint !== undefined ? `${r.target.vendor ?? "?"} ${r.target.model ?? "?"} (contract ${r.target.contractVersion ?? "?"}) at ${r.target.endpoint}` : `NBD server at ${r.target.nbdOnlyUri ?? "?"}`;
  lines.push(`sanbox conformance: ${who}`);
  let area = "";
  for (const c of r.results) {
    if (c.area !== area) {
      area = c.area;
      lines.push(`\n${area}`);
    }
    const tag = c.status === "passed" ? "PASS" : c.status === "failed" ? "FAIL" : "SKIP";
    lines.push(`  ${tag}  ${c.id}${c.status === "skipped" ? `  (${c.detail ?? ""})` : ""}  ${c.durationMs} ms`);
    if (c.status === "failed") {
      lines.push(`        rule broken: ${c.rule}`);
      for (const l of (c.detail ?? "").split("\n")) lines.push(`        ${l}`);
    }
  }
  lines.push(`\n${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped (${(r.durationMs / 1000).toFixed(1)} s)`);
  return `${lines.join("\n")}\n`;
}

export function formatJson(r: ConformanceReport): string {
  return `${JSON.stringify(r, null, 2)}\n`;
}

function xml(s: string): string {
  // Drop characters XML 1.0 cannot carry, then escape.
  return s.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, "?").replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&apos;");
}

function secs(ms: number): string {
  return (ms / 1000).toFixed(3);
}

function testcase(c: CheckResult): string {
  const head = `    <testcase classname="sanbox.conformance.${xml(c.area)}" name="${xml(c.id)}" time="${secs(c.durationMs)}"`;
  if (c.status === "passed") return `${head}/>`;
  if (c.status === "skipped") return `${head}>\n      <skipped message="${xml(c.detail ?? "")}"/>\n    </testcase>`;
  return `${head}>\n      <failure message="${xml(`rule broken: ${c.rule}`)}" type="ContractViolation">${xml(c.detail ?? "")}</failure>\n    </testcase>`;
}

export function formatJunit(r: ConformanceReport): string {
  const areas = [...new Set(r.results.map((c) => c.area))];
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  out.push(`<testsuites name="sanbox conformance" tests="${r.results.length}" failures="${r.failed}" skipped="${r.skipped}" time="${secs(r.durationMs)}">`);
  for (const a of areas) {
    const cs = r.results.filter((c) => c.area === a);
    const n = (s: CheckResult["status"]): number => cs.filter((c) => c.status === s).length;
    const time = cs.reduce((t, c) => t + c.durationMs, 0);
    out.push(`  <testsuite name="${xml(a)}" tests="${cs.length}" failures="${n("failed")}" errors="0" skipped="${n("skipped")}" time="${secs(time)}" timestamp="${xml(r.startedAt)}">`);
    for (const c of cs) out.push(testcase(c));
    out.push("  </testsuite>");
  }
  out.push("</testsuites>");
  return `${out.join("\n")}\n`;
}
