/** The simulated hypervisor: datastores over NBD, VMs, the dependent-write workload, quiesce. */
export { ArrayLink, type LunInfo } from "./array-link.js";
export { MountedDatastore } from "./datastore-mount.js";
export { LunPath, PathHandle, type PathState, type PathStatus } from "./lun-path.js";
export { DEFAULT_RECONNECT_LIMIT, DEFAULT_RECONNECT_POLICY, backoffDelay, backoffSchedule, type ReconnectPolicy } from "./reconnect-policy.js";
export { Hypervisor, DEFAULT_QUIESCE_TIMEOUT_MS, type VmView, type DiskView, type NewDisk } from "./hypervisor.js";
export { hypervisorService, statusMessage } from "./hypervisor-service.js";
export { QuiesceGate } from "./quiesce-gate.js";
export { VmRuntime, type VmIo, type RuntimeStatus, type RuntimeState } from "./vm-runtime.js";
