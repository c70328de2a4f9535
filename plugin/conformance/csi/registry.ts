/**
 * The CSI suite's checks, in report order. Each check file calls
 *
 *   csiCheck("csi.delta.no-overlap", "the rule, as the CSI spec states it (section)", async (t) => …);
 *
 * at import time. The area of a check is the first two parts of its id
 * (`csi.delta`), which becomes the JUnit <testsuite>. A check that needs data
 * access (the endpoint also serving sanbox.array.v1.ArrayService) reads
 * `t.array`, which skips it as not applicable when there is none.
 */
import type { CsiContext } from "./context.js";

export interface CsiCheckSpec {
  readonly area: string;
  readonly id: string;
  readonly rule: string;
  readonly fn: (t: CsiContext) => Promise<void>;
}

const CHECKS: CsiCheckSpec[] = [];

export function csiCheck(id: string, rule: string, fn: (t: CsiContext) => Promise<void>): void {
  const parts = id.split(".");
  if (parts.length < 3 || parts[0] !== "csi") throw new Error(`CSI check id "${id}" must be csi.<area>.<name>`);
  if (CHECKS.some((c) => c.id === id)) throw new Error(`CSI check id "${id}" registered twice`);
  CHECKS.push({ area: parts.slice(0, 2).join("."), id, rule, fn });
}

export function csiChecks(): readonly CsiCheckSpec[] {
  return CHECKS;
}
