/**
 * The CSI conformance suite (`sanbox conformance --csi ENDPOINT`), for any CSI
 * driver that serves Identity, Controller, GroupController and
 * SnapshotMetadata. Checks register on import, in report order; the report
 * and its renderings are the array suite's. docs/conformance.md, "For CSI
 * driver vendors", says what each check means.
 */
import "./checks/identity.js";
import "./checks/stream.js";
import "./checks/data.js";
import "./checks/errors.js";
import "./checks/group.js";
import "./checks/group-atomic.js";

export { runCsiConformance } from "./runner.js";
export { csiChecks, type CsiCheckSpec } from "./registry.js";
export type { CsiConformanceConfig } from "./context.js";
