#!/usr/bin/env node
// `npm test`: setup check, protobuf codegen, lint, typecheck, build, then every vitest tier.
// Ends with the plain line `N passed, N failed[, N skipped]` that CI reads.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

function step(name, cmd, args) {
  console.error(`\n== ${name}: ${cmd} ${args.join(" ")}`);
  const r = spawnSync(cmd, args, { stdio: "inherit" });
  if (r.status !== 0) {
    console.error(`== ${name} failed (exit ${r.status ?? r.signal})`);
    console.log("0 passed, 1 failed");
    process.exit(1);
  }
}

step("setup", "node", ["scripts/setup.mjs"]);
step("codegen", "node", ["scripts/codegen.mjs"]);
step("lint", "npx", ["eslint", "."]);
step("typecheck", "npx", ["tsc", "-p", "tsconfig.json", "--noEmit"]);
step("build", "npx", ["tsc", "-p", "tsconfig.build.json"]);

const dir = mkdtempSync(join(tmpdir(), "sanbox-vitest-"));
const out = join(dir, "results.json");
const extra = process.argv.slice(2);
console.error(`\n== vitest`);
const r = spawnSync("npx", ["vitest", "run", "--reporter=default", "--reporter=json", `--outputFile.json=${out}`, ...extra], { stdio: "inherit" });
let passed = 0, failed = 0, skipped = 0;
try {
  const res = JSON.parse(readFileSync(out, "utf8"));
  passed = res.numPassedTests;
  failed = res.numFailedTests;
  skipped = res.numPendingTests + res.numTodoTests;
  // A suite that failed to load has no tests counted; count it as a failure.
  for (const s of res.testResults ?? []) if (s.status === "failed" && (s.assertionResults ?? []).length === 0) failed++;
} catch (e) {
  console.error(`could not read vitest results: ${e instanceof Error ? e.message : String(e)}`);
  failed = Math.max(failed, 1);
}
rmSync(dir, { recursive: true, force: true });
if (r.status !== 0 && failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed > 0 ? 1 : 0);
