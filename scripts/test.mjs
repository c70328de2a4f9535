#!/usr/bin/env node
// `npm test`: setup check, protobuf codegen, lint, typecheck, build, then every vitest tier
// (the main config, then the RBD tier's own config).
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

// --rbd: the RBD tier below needs Ceph; as root setup installs it when missing (about 17 s).
step("setup", "node", ["scripts/setup.mjs", "--rbd"]);
step("codegen", "node", ["scripts/codegen.mjs"]);
step("lint", "npx", ["eslint", "."]);
step("typecheck", "npx", ["tsc", "-p", "tsconfig.json", "--noEmit"]);
step("build", "npx", ["tsc", "-p", "tsconfig.build.json"]);

const dir = mkdtempSync(join(tmpdir(), "sanbox-vitest-"));
const extra = process.argv.slice(2);
let passed = 0, failed = 0, skipped = 0;

/** One vitest run; adds its counts to the totals. */
function tier(name, configArgs) {
  const out = join(dir, `${name.replace(/[^a-z0-9]+/g, "-")}.json`);
  console.error(`\n== vitest (${name})`);
  const r = spawnSync("npx", ["vitest", "run", ...configArgs, "--reporter=default", "--reporter=json", `--outputFile.json=${out}`, ...extra], { stdio: "inherit" });
  let f = 0;
  try {
    const res = JSON.parse(readFileSync(out, "utf8"));
    passed += res.numPassedTests;
    f = res.numFailedTests;
    skipped += res.numPendingTests + res.numTodoTests;
    // A suite that failed to load has no tests counted; count it as a failure.
    for (const s of res.testResults ?? []) if (s.status === "failed" && (s.assertionResults ?? []).length === 0) f++;
  } catch (e) {
    console.error(`could not read vitest results (${name}): ${e instanceof Error ? e.message : String(e)}`);
    f = Math.max(f, 1);
  }
  if (r.status !== 0 && f === 0) f = 1;
  failed += f;
}

tier("unit, model, interop, crash, e2e", []);
// The RBD tier (test/rbd/, docs/rbd.md) starts its own throwaway Ceph cluster; it needs
// the packages of `node scripts/setup.mjs --rbd`, which the setup step above installs. Given file arguments, only the main tier runs.
if (extra.length === 0) tier("rbd", ["--config", "vitest.rbd.config.ts"]);
rmSync(dir, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed > 0 ? 1 : 0);
