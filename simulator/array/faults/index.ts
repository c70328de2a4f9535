/**
 * TEST-ONLY: the array's faults, as wrappers around the real objects
 * (src/failpoints.ts is the registry; docs/conformance.md "Failpoints" lists
 * what each one breaks and which check must catch it).
 *
 * The daemon calls `wrapWithFaults` once at start-up with the active faults;
 * with none it returns the real service and provider untouched, so the real
 * objects never test for a fault on any call. Every fault name of the registry
 * has exactly one entry below (the type checker enforces it), applied in the
 * table's order, each wrapping the result of the ones before it.
 */
import type { FaultName } from "../../../src/failpoints.js";
import type { ExportProvider } from "../../../src/nbd/backend.js";
import type { ArrayServiceImpl } from "../../../src/rpc/array-service-def.js";
import type { CsiServices } from "../../../src/rpc/csi-service-defs.js";
import type { ArrayBackend } from "../backend.js";
import { cbtDropZero, cbtIgnoreStartingOffset, cbtOffByOne } from "./cbt.js";
import { groupSkew } from "./group-skew.js";
import { snapshotLeak } from "./snapshot-leak.js";
import { wrongStatus } from "./wrong-status.js";

export interface ArrayFronts {
  service: ArrayServiceImpl;
  provider: ExportProvider;
}

/** What the daemon serves: the fronts and the CSI services made over the (faulty) service. */
export interface ServedFronts extends ArrayFronts {
  csi: CsiServices;
}

type Fault = (fronts: ArrayFronts, store: ArrayBackend) => ArrayFronts;

const FAULTS: Record<FaultName, Fault> = {
  "cbt-drop-zero": (fronts) => ({ ...fronts, service: cbtDropZero(fronts.service) }),
  "cbt-off-by-one": (fronts) => ({ ...fronts, service: cbtOffByOne(fronts.service) }),
  "cbt-ignore-starting-offset": (fronts) => ({ ...fronts, service: cbtIgnoreStartingOffset(fronts.service) }),
  "group-skew": (fronts) => ({ ...fronts, service: groupSkew(fronts.service) }),
  "snapshot-leak": (fronts, store) => ({ ...fronts, provider: snapshotLeak(fronts.provider, store) }),
  "wrong-status": (fronts) => ({ ...fronts, service: wrongStatus(fronts.service) }),
};

/**
 * The real service and provider with every fault in `faults` in front of them,
 * and the CSI services `csiOver` makes over that faulty service (so an
 * ArrayService fault such as group-skew reaches CSI callers too).
 */
export function wrapWithFaults(real: ArrayFronts, store: ArrayBackend, faults: ReadonlySet<FaultName>, csiOver: (service: ArrayServiceImpl) => CsiServices): ServedFronts {
  let fronts = real;
  for (const [name, fault] of Object.entries(FAULTS) as [FaultName, Fault][]) if (faults.has(name)) fronts = fault(fronts, store);
  return { ...fronts, csi: csiOver(fronts.service) };
}
