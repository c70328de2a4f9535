/**
 * CSI Identity (spec "Identity Service RPC") over the array: the plugin name
 * `array.sanbox.io`, the package version, and the three services the array
 * offers beside Identity. Probe asks the array itself (GetArrayInfo), so a
 * store that cannot answer makes Probe fail rather than claim readiness.
 */
import { packageInfo } from "../../../src/package-root.js";
import { CSI_SPEC_VERSION, csi } from "../../../src/rpc/csi-proto.js";
import type { CsiIdentityImpl } from "../../../src/rpc/csi-service-defs.js";
import type { ArrayServiceImpl } from "../../../src/rpc/array-service-def.js";
import { CONTRACT_VERSION, v1 } from "../../../src/rpc/proto.js";

export const CSI_PLUGIN_NAME = "array.sanbox.io";

const SERVICES = [
  csi.PluginCapability.Service.Type.CONTROLLER_SERVICE,
  csi.PluginCapability.Service.Type.GROUP_CONTROLLER_SERVICE,
  csi.PluginCapability.Service.Type.SNAPSHOT_METADATA_SERVICE,
];

export function csiIdentity(array: ArrayServiceImpl): CsiIdentityImpl {
  return {
    getPluginInfo: async () => ({
      name: CSI_PLUGIN_NAME,
      vendorVersion: packageInfo().version,
      manifest: { csiSpec: CSI_SPEC_VERSION, arrayContract: CONTRACT_VERSION },
    }),
    getPluginCapabilities: async () => ({ capabilities: SERVICES.map((type) => ({ service: { type } })) }),
    probe: async (_req, ctx) => {
      await array.getArrayInfo(v1.GetArrayInfoRequest.create(), ctx);
      return { ready: { value: true } };
    },
  };
}
