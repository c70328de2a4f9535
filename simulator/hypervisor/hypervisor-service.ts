/**
 * HypervisorService (proto/sanbox/hypervisor/v1) over a Hypervisor: request
 * validation and the mapping between the simulator's views and the messages.
 */
import { InvalidArgumentError } from "../../src/errors.js";
import { hv1 } from "../../src/rpc/hypervisor-proto.js";
import type { HypervisorServiceImpl } from "../../src/rpc/hypervisor-service-def.js";
import type { DiskView, Hypervisor, NewDisk, VmView } from "./hypervisor.js";
import type { RuntimeStatus } from "./vm-runtime.js";

function required(field: string, v: string): string {
  if (v === "") throw new InvalidArgumentError(`${field} is required`);
  return v;
}

const STATE: Record<RuntimeStatus["state"], hv1.WorkloadState> = {
  stopped: hv1.WorkloadState.STOPPED,
  running: hv1.WorkloadState.RUNNING,
  failed: hv1.WorkloadState.FAILED,
};

export function statusMessage(vm: string, s: RuntimeStatus): hv1.IWorkloadStatus {
  return {
    vm,
    state: STATE[s.state],
    workload: s.workload,
    seed: s.seed,
    rate: s.rate,
    acknowledgedSeq: s.acknowledgedSeq,
    quiesced: s.quiesced,
    error: s.error,
    writes: s.writes,
    trims: s.trims,
    grows: s.grows,
  };
}

function diskMessage(d: DiskView): hv1.IVirtualDisk {
  return { ...d, kind: d.kind === "vmdk" ? hv1.DiskKind.VMDK : hv1.DiskKind.RDM };
}

function vmMessage(v: VmView): hv1.IVm {
  return {
    name: v.name,
    datastoreLunId: v.datastoreLunId,
    datastoreLunName: v.datastoreLunName,
    directory: v.directory,
    vmxPath: v.vmxPath,
    disks: v.disks.map(diskMessage),
    workload: statusMessage(v.name, v.workload),
  };
}

function newDisk(d: hv1.IDiskSpec, i: number): NewDisk {
  if (d.kind === hv1.DiskKind.VMDK) return { kind: "vmdk", capacityBytes: d.capacityBytes ?? 0 };
  if (d.kind === hv1.DiskKind.RDM) return { kind: "rdm", lun: required(`disks[${i}].lun`, d.lun ?? "") };
  throw new InvalidArgumentError(`disks[${i}].kind must be VMDK or RDM`);
}

export function hypervisorService(hv: Hypervisor): HypervisorServiceImpl {
  return {
    listVms: async () => ({ vms: (await hv.listVms()).map(vmMessage) }),
    getVm: async (req) => vmMessage(await hv.getVm(required("name", req.name))),
    createVm: async (req) => vmMessage(await hv.createVm(required("name", req.name), required("datastore_lun", req.datastoreLun), req.disks.map(newDisk))),
    deleteVm: async (req) => {
      await hv.deleteVm(required("name", req.name), req.force);
      return {};
    },
    startWorkload: async (req) => {
      const vm = required("vm", req.vm);
      // proto3 `optional`: absent decodes as null (the prototype default).
      const seed = typeof req.seed === "number" ? req.seed : undefined;
      return statusMessage(vm, await hv.startWorkload(vm, { workload: req.workload, rate: req.rate, ...(seed !== undefined ? { seed } : {}) }));
    },
    stopWorkload: async (req) => {
      const vm = required("vm", req.vm);
      return statusMessage(vm, await hv.stopWorkload(vm));
    },
    getWorkloadStatus: async (req) => {
      const vm = required("vm", req.vm);
      return statusMessage(vm, hv.workloadStatus(vm));
    },
    quiesceVm: async (req) => {
      const vm = required("vm", req.vm);
      return statusMessage(vm, await hv.quiesce(vm, req.timeoutMs));
    },
    resumeVm: async (req) => {
      const vm = required("vm", req.vm);
      return statusMessage(vm, hv.resume(vm));
    },
  };
}
