/**
 * Runs the registered checks against one array (or, with `nbdOnlyUri`, the NBD
 * data-path checks against any NBD server) and returns a report.
 *
 * Per area: the checks run in registration order (sequentially: they share the
 * array, and some measure ordering under load), each under a timeout; then the
 * area's resource tracker deletes everything the area created, and anything it
 * cannot delete becomes a failed `<area>.cleanup` result.
 */
import { SanboxError, errorMessage } from "../../src/errors.js";
import { connectArray, type ArrayClient } from "../../src/rpc/array-client.js";
import { RuleViolation, SkipCheck } from "./assert.js";
import { CheckContext, claims, runPrefix, type AreaRun, type ArrayInfo, type ConformanceConfig } from "./context.js";
import { registeredAreas, type AreaSpec, type CheckSpec } from "./registry.js";
import { ResourceTracker } from "./tracker.js";

export type CheckStatus = "passed" | "failed" | "skipped";

export interface CheckResult {
  area: string;
  id: string;
  rule: string;
  status: CheckStatus;
  durationMs: number;
  /** Failed: the evidence; skipped: the reason. */
  detail?: string;
}

export interface ConformanceReport {
  target: { endpoint?: string; nbdOnlyUri?: string; vendor?: string; model?: string; contractVersion?: string };
  startedAt: string;
  durationMs: number;
  passed: number;
  failed: number;
  skipped: number;
  results: CheckResult[];
}

const CHECK_TIMEOUT_MS = 90_000;

export function matcher(only: string | undefined): (id: string) => boolean {
  if (only === undefined || only === "") return () => true;
  let re: RegExp | undefined;
  try {
    re = new RegExp(only);
  } catch {
    re = undefined;
  }
  return (id) => (re !== undefined ? re.test(id) : id.includes(only));
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new RuleViolation(`${what} did not finish within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function describeError(e: unknown): string {
  if (e instanceof SanboxError) return `unexpected ${e.code}: ${e.message}`;
  return `unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
}

async function runCheck(spec: CheckSpec, run: AreaRun): Promise<CheckResult> {
  const base = { area: spec.area, id: spec.id, rule: spec.rule };
  const t0 = Date.now();
  const done = (status: CheckStatus, detail?: string): CheckResult => ({ ...base, status, durationMs: Date.now() - t0, ...(detail !== undefined ? { detail } : {}) });
  if (spec.arrayOnly && run.array === undefined) return done("skipped", "needs an ArrayService endpoint (--nbd-only mode)");
  if (run.info !== undefined) {
    const missing = spec.requires.filter((c) => !claims(run.info as ArrayInfo, c));
    if (missing.length > 0) return done("skipped", `the array does not claim ${missing.join(", ")}`);
  }
  return guarded(spec.id, () => spec.fn(new CheckContext(run)), done);
}

/** Runs one check body under the timeout and classifies its end: passed, skipped (SkipCheck), failed (RuleViolation or any other error). */
export async function guarded(id: string, body: () => Promise<void>, done: (status: CheckStatus, detail?: string) => CheckResult): Promise<CheckResult> {
  try {
    await withTimeout(body(), CHECK_TIMEOUT_MS, id);
    return done("passed");
  } catch (e: unknown) {
    if (e instanceof SkipCheck) return done("skipped", e.reason);
    if (e instanceof RuleViolation) return done("failed", e.detail);
    return done("failed", describeError(e));
  }
}

export async function runConformance(config: ConformanceConfig, areas: readonly AreaSpec[] = registeredAreas()): Promise<ConformanceReport> {
  const started = Date.now();
  const nbdOnly = config.nbdOnlyUri !== undefined;
  const wanted = matcher(config.only);
  const results: CheckResult[] = [];
  let array: ArrayClient | undefined;
  let info: ArrayInfo | undefined;
  const target: ConformanceReport["target"] = {};
  if (nbdOnly) {
    if (config.nbdOnlyUri !== undefined) target.nbdOnlyUri = config.nbdOnlyUri;
  } else {
    if (config.endpoint === undefined) throw new SanboxError("INVALID_ARGUMENT", "give an ArrayService endpoint, or an NBD URI for --nbd-only");
    target.endpoint = config.endpoint;
    array = connectArray({ endpoint: config.endpoint, ...(config.token !== undefined ? { token: config.token } : {}), ...(config.ca !== undefined ? { ca: config.ca } : {}) });
  }
  try {
    if (array !== undefined) {
      const t0 = Date.now();
      try {
        info = await array.getArrayInfo({}, { timeoutMs: 15_000 });
        target.vendor = info.vendor;
        target.model = info.model;
        target.contractVersion = info.contractVersion;
      } catch (e: unknown) {
        results.push({
          area: "identity",
          id: "identity.reachable",
          rule: "GetArrayInfo answers (the endpoint is an ArrayService and accepts the given token)",
          status: "failed",
          durationMs: Date.now() - t0,
          detail: errorMessage(e),
        });
        return finish(results, target, started);
      }
    }
    const prefix = runPrefix();
    for (const area of areas) {
      if (nbdOnly && area.mode !== "nbd") continue;
      const checks = area.checks.filter((c) => wanted(c.id));
      if (checks.length === 0) continue;
      const run: AreaRun = { tracker: new ResourceTracker(array), fixtures: new Map(), array, info, config, prefix: `${prefix}${area.name.slice(0, 3)}`, counter: 0 };
      config.log?.(`area ${area.name}: ${checks.length} check(s)`);
      for (const c of checks) {
        const r = await runCheck(c, run);
        config.log?.(`  ${r.status.toUpperCase().padEnd(7)} ${r.id} (${r.durationMs} ms)${r.detail !== undefined ? `: ${r.detail.split("\n")[0] ?? ""}` : ""}`);
        results.push(r);
      }
      const t0 = Date.now();
      // Fixtures that failed to build were reported by their checks; do not leave unhandled rejections.
      for (const f of run.fixtures.values()) f.catch(() => undefined);
      const leaks = await run.tracker.cleanup();
      for (const leak of leaks) {
        results.push({
          area: area.name,
          id: `${area.name}.cleanup`,
          rule: "everything the suite created can be deleted again (exports, snapshots, group snapshots, mappings, LUNs, hosts)",
          status: "failed",
          durationMs: Date.now() - t0,
          detail: `could not delete ${leak}`,
        });
      }
    }
    return finish(results, target, started);
  } finally {
    array?.close();
  }
}

export function finish(results: CheckResult[], target: ConformanceReport["target"], started: number): ConformanceReport {
  const count = (s: CheckStatus): number => results.filter((r) => r.status === s).length;
  return {
    target,
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    passed: count("passed"),
    failed: count("failed"),
    skipped: count("skipped"),
    results,
  };
}
