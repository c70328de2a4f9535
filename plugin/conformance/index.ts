/**
 * The array conformance suite, as a library:
 *
 *   import { runConformance, formatHuman } from "plugin/conformance/index.js";
 *   const report = await runConformance({ endpoint: "unix:/…/rpc.sock", idempotentCount: 3 });
 *   process.stdout.write(formatHuman(report));
 *
 * Areas register themselves on import (areas/index.ts); a vendor can add its
 * own with describeArea() before calling runConformance(). docs/conformance.md
 * says what each area checks.
 */
import "./areas/index.js";

export { describeArea, registeredAreas, type AreaSpec, type Capability, type CheckSpec } from "./registry.js";
export { CheckContext, type ConformanceConfig } from "./context.js";
export { runConformance, matcher, type CheckResult, type ConformanceReport } from "./runner.js";
export { formatHuman, formatJson, formatJunit } from "./report.js";
export { must, expectCode, violation } from "./assert.js";
