/**
 * A VM's disk layout as the backup sees it: per disk its name (the descriptor's
 * base name, "vm1_1"), SCSI slot, kind, and where its data lives (a flat file
 * on the datastore, or an array LUN by NAA id). Two sources give one: the
 * hypervisor's inventory (before T1) and the datastore in snapshot S1 (after
 * T1, authoritative). If they disagree a disk was added or removed in between,
 * and the run drops S1 and starts over.
 */
import type { VmInfo } from "../../src/datastore/vm-files.js";
import { FailedPreconditionError } from "../../src/errors.js";
import { hv1 } from "../../src/rpc/hypervisor-proto.js";
import type { Decoded } from "../../src/rpc/service.js";

export interface DiskLayout {
  name: string;
  slot: string;
  kind: "vmdk" | "rdm";
  flatPath?: string;
  naa?: string;
}

export interface VmLayout {
  vm: string;
  dir: string;
  disks: DiskLayout[];
}

function baseName(path: string): string {
  const file = path.split("/").pop() ?? path;
  return file.replace(/\.vmdk$/i, "");
}

export function layoutFromVmInfo(vm: string, info: VmInfo): VmLayout {
  return {
    vm,
    dir: info.dir,
    disks: info.disks.map((d): DiskLayout => {
      if (d.kind === "flat") {
        if (d.flatPath === undefined) throw new FailedPreconditionError(`${d.descriptorPath}: virtual disk without a flat file`);
        return { name: baseName(d.descriptorPath), slot: d.slot, kind: "vmdk", flatPath: d.flatPath };
      }
      if (d.rdm === undefined) throw new FailedPreconditionError(`${d.descriptorPath}: RDM without a mapping`);
      if (d.rdm.mode !== "physical") throw new FailedPreconditionError(`${d.descriptorPath}: only physical-mode RDMs are supported`);
      return { name: baseName(d.descriptorPath), slot: d.slot, kind: "rdm", naa: d.rdm.naa.toLowerCase() };
    }),
  };
}

export function layoutFromInventory(vm: Decoded<hv1.IVm>): VmLayout {
  return {
    vm: vm.name,
    dir: vm.directory,
    disks: vm.disks.map((d): DiskLayout => {
      if (d.kind === hv1.DiskKind.RDM) return { name: baseName(d.descriptorPath), slot: d.slot, kind: "rdm", naa: d.rdmNaa.toLowerCase() };
      return { name: baseName(d.descriptorPath), slot: d.slot, kind: "vmdk", flatPath: d.flatPath };
    }),
  };
}

/** The differences between two layouts, in words (empty: the same disks). */
export function layoutChanges(a: VmLayout, b: VmLayout): string[] {
  const key = (d: DiskLayout): string => `${d.slot} ${d.kind} ${d.name} ${d.flatPath ?? ""}${d.naa ?? ""}`;
  const ka = new Set(a.disks.map(key));
  const kb = new Set(b.disks.map(key));
  return [...[...ka].filter((k) => !kb.has(k)).map((k) => `gone: ${k}`), ...[...kb].filter((k) => !ka.has(k)).map((k) => `new: ${k}`)];
}
