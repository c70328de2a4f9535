/**
 * Identity and capabilities: the plugin names itself and advertises the
 * services the rest of the suite exercises (CSI spec, "GetPluginInfo",
 * "GetPluginCapabilities", "Probe", "ControllerGetCapabilities",
 * "GroupControllerGetCapabilities").
 */
import { csi } from "../../../../src/rpc/csi-proto.js";
import { must } from "../../assert.js";
import { csiCheck } from "../registry.js";

csiCheck("csi.identity.plugin-info", "GetPluginInfo names the plugin (domain-name notation, at most 63 characters) and gives a vendor_version (GetPluginInfo)", async (t) => {
  const info = await t.csi.identity.getPluginInfo({});
  must(info.name !== "" && info.name.length <= 63, `name ${JSON.stringify(info.name)} is empty or longer than 63 characters`);
  must(/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(info.name), `name ${JSON.stringify(info.name)} is not in domain-name notation`);
  must(info.vendorVersion !== "", "vendor_version is empty");
  const probe = await t.csi.identity.probe({});
  must(probe.ready?.value !== false, "Probe says the plugin is not ready");
});

csiCheck(
  "csi.identity.capabilities",
  "the plugin advertises CONTROLLER_SERVICE, GROUP_CONTROLLER_SERVICE and SNAPSHOT_METADATA_SERVICE, the controller CREATE_DELETE_VOLUME and CREATE_DELETE_SNAPSHOT, the group controller CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT (GetPluginCapabilities, ControllerGetCapabilities, GroupControllerGetCapabilities)",
  async (t) => {
    const S = csi.PluginCapability.Service.Type;
    const plugin = new Set((await t.csi.identity.getPluginCapabilities({})).capabilities.map((c) => c.service?.type));
    for (const want of [S.CONTROLLER_SERVICE, S.GROUP_CONTROLLER_SERVICE, S.SNAPSHOT_METADATA_SERVICE]) must(plugin.has(want), `GetPluginCapabilities lacks ${S[want]}`);
    const R = csi.ControllerServiceCapability.RPC.Type;
    const ctl = new Set((await t.csi.controller.controllerGetCapabilities({})).capabilities.map((c) => c.rpc?.type));
    for (const want of [R.CREATE_DELETE_VOLUME, R.CREATE_DELETE_SNAPSHOT]) must(ctl.has(want), `ControllerGetCapabilities lacks ${R[want]}`);
    const G = csi.GroupControllerServiceCapability.RPC.Type;
    const grp = new Set((await t.csi.groupController.groupControllerGetCapabilities({})).capabilities.map((c) => c.rpc?.type));
    must(grp.has(G.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT), "GroupControllerGetCapabilities lacks CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT");
  },
);
