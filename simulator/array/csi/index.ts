/**
 * The array's CSI plugin: the four CSI services (proto/csi/v1/csi.proto) as
 * adapters over an ArrayServiceImpl, the very object the daemon serves as
 * ArrayService (failpoints included), so every backend and every rule of the
 * array holds for CSI callers too. docs/contract.md "CSI" is the statement of
 * the subset, the mapping and the errors.
 */
import type { ArrayServiceImpl } from "../../../src/rpc/array-service-def.js";
import type { CsiServices } from "../../../src/rpc/csi-service-defs.js";
import type { BlockMetadataMode } from "./block-metadata.js";
import { csiController } from "./controller.js";
import { csiGroupController } from "./group-controller.js";
import { csiIdentity } from "./identity.js";
import { csiSnapshotMetadata } from "./snapshot-metadata.js";

export { BLOCK_METADATA_MODES, type BlockMetadataMode } from "./block-metadata.js";
export { CSI_PLUGIN_NAME } from "./identity.js";

export interface CsiOptions {
  /** SnapshotMetadata tuples: "variable" (coalesced ranges, the default) or "fixed" (one CBT granule each). */
  blockMetadata: BlockMetadataMode;
}

export function createCsiServices(array: ArrayServiceImpl, options: CsiOptions): CsiServices {
  return {
    identity: csiIdentity(array),
    controller: csiController(array),
    groupController: csiGroupController(array),
    snapshotMetadata: csiSnapshotMetadata(array, options.blockMetadata),
  };
}
