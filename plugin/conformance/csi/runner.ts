/**
 * Runs the CSI checks against one CSI endpoint and returns the same report as
 * the array suite (so formatHuman / formatJunit / formatJson and the exit codes
 * are shared).
 *
 * Order of a run: GetPluginInfo must answer (else one failed
 * `csi.identity.reachable` result and nothing else); GetArrayInfo on the same
 * endpoint decides whether the data checks apply; the checks run one after
 * another under a timeout; then the tracker deletes everything, and each thing
 * it cannot delete is a failed `csi.cleanup.leak` result.
 */
import { errorMessage } from "../../../src/errors.js";
import { connectArray, type ArrayClient } from "../../../src/rpc/array-client.js";
import { CSI_SPEC_VERSION } from "../../../src/rpc/csi-proto.js";
import { closeCsi, connectCsi } from "../../../src/rpc/csi-service-defs.js";
import { runPrefix } from "../context.js";
import { finish, guarded, matcher, type CheckResult, type CheckStatus, type ConformanceReport } from "../runner.js";
import { CsiContext, type CsiConformanceConfig, type CsiRun } from "./context.js";
import { csiChecks, type CsiCheckSpec } from "./registry.js";
import { CsiTracker } from "./tracker.js";

async function runOne(spec: CsiCheckSpec, run: CsiRun): Promise<CheckResult> {
  const t0 = Date.now();
  const done = (status: CheckStatus, detail?: string): CheckResult => ({ area: spec.area, id: spec.id, rule: spec.rule, status, durationMs: Date.now() - t0, ...(detail !== undefined ? { detail } : {}) });
  return guarded(spec.id, () => spec.fn(new CsiContext(run)), done);
}

/** Data access: the endpoint also serves sanbox.array.v1.ArrayService (one GetArrayInfo call decides). */
async function dataAccess(config: CsiConformanceConfig): Promise<{ array?: ArrayClient; reason: string }> {
  const array = connectArray({ endpoint: config.endpoint, ...(config.token !== undefined ? { token: config.token } : {}), ...(config.ca !== undefined ? { ca: config.ca } : {}) });
  try {
    const info = await array.getArrayInfo({}, { timeoutMs: 15_000 });
    return { array, reason: `data access through ${info.vendor} ${info.model} ArrayService` };
  } catch (e: unknown) {
    array.close();
    return { reason: `the endpoint does not serve sanbox.array.v1.ArrayService (GetArrayInfo: ${errorMessage(e)}), so there is no data path to write volumes and read snapshots` };
  }
}

export async function runCsiConformance(config: CsiConformanceConfig, checks: readonly CsiCheckSpec[] = csiChecks()): Promise<ConformanceReport> {
  const started = Date.now();
  const wanted = matcher(config.only);
  const results: CheckResult[] = [];
  const target: ConformanceReport["target"] = { endpoint: config.endpoint, contractVersion: `CSI ${CSI_SPEC_VERSION}` };
  const csi = connectCsi({ endpoint: config.endpoint, ...(config.token !== undefined ? { token: config.token } : {}), ...(config.ca !== undefined ? { ca: config.ca } : {}) });
  let array: ArrayClient | undefined;
  try {
    const t0 = Date.now();
    try {
      const info = await csi.identity.getPluginInfo({}, { timeoutMs: 15_000 });
      target.vendor = info.name;
      target.model = info.vendorVersion;
    } catch (e: unknown) {
      results.push({ area: "csi.identity", id: "csi.identity.reachable", rule: "GetPluginInfo answers (the endpoint is a CSI plugin and accepts the given credentials)", status: "failed", durationMs: Date.now() - t0, detail: errorMessage(e) });
      return finish(results, target, started);
    }
    const access = await dataAccess(config);
    array = access.array;
    config.log?.(access.reason);
    const tracker = new CsiTracker(csi, array, config.secrets);
    const run: CsiRun = { csi, array, noDataReason: access.reason, tracker, fixtures: new Map(), config, prefix: `${runPrefix()}csi`, counter: 0 };
    for (const c of checks.filter((x) => wanted(x.id))) {
      const r = await runOne(c, run);
      config.log?.(`  ${r.status.toUpperCase().padEnd(7)} ${r.id} (${r.durationMs} ms)${r.detail !== undefined ? `: ${r.detail.split("\n")[0] ?? ""}` : ""}`);
      results.push(r);
    }
    for (const f of run.fixtures.values()) f.catch(() => undefined);
    const t1 = Date.now();
    for (const leak of await tracker.cleanup()) {
      results.push({ area: "csi.cleanup", id: "csi.cleanup.leak", rule: "everything the suite created can be deleted again through CSI (snapshots, group snapshots, volumes)", status: "failed", durationMs: Date.now() - t1, detail: `could not delete ${leak}` });
    }
    return finish(results, target, started);
  } finally {
    array?.close();
    closeCsi(csi);
  }
}
