/**
 * The generated HypervisorService codecs under a short name (`hv1.Vm`,
 * `hv1.IVm`). Everything outside src/rpc imports the hypervisor messages from
 * here, never from ./generated directly. int64 fields are plain numbers
 * (scripts/codegen.mjs); the module has its own protobuf root (`sanbox_hypervisor`).
 */
import { sanbox } from "./generated/hypervisor.js";

export import hv1 = sanbox.hypervisor.v1;

export const HYPERVISOR_SERVICE_NAME = "sanbox.hypervisor.v1.HypervisorService";
