/** The array's block store: public surface (see array-store.ts and volume.ts). */
export {
  ArrayStore,
  DEFAULT_BLOCK_SIZE,
  MAX_BLOCK_SIZE,
  MAX_LUN_SIZE,
  MIN_BLOCK_SIZE,
  type CbtTarget,
  type ChangedExtentsResult,
  type GroupSnapshotInfo,
  type LunInfo,
  type OpenOptions,
  type PoolInfo,
  type SnapshotInfo,
} from "./array-store.js";
export { Volume, type VolumeTarget } from "./volume.js";
export type { AllocatedExtentsResult, ArrayBackend, BackendCapabilities, LunVolume } from "./backend.js";
export type { ChangeFlag, ChangedExtent } from "./cbt.js";
export type { CheckReport } from "./checker.js";
