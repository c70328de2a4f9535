/**
 * A VM on the datastore: a directory holding its VMX, and per disk a VMDK
 * descriptor plus either a thin `-flat.vmdk` (virtual disk) or a `-rdmp.vmdk`
 * mapping file (physical RDM, naming the array LUN by NAA id).
 *
 *   /vm1/vm1.vmx
 *   /vm1/vm1.vmdk          /vm1/vm1-flat.vmdk          scsi0:0, virtual disk
 *   /vm1/vm1_1.vmdk        /vm1/vm1_1-flat.vmdk        scsi0:1, virtual disk
 *   /vm1/vm1_2.vmdk        /vm1/vm1_2-rdmp.vmdk        scsi0:2, physical RDM
 *
 * The hypervisor writes this with createVm; the backup plugin discovers it from a
 * snapshot of the datastore LUN with listVms/readVm, and maps flat files to LUN
 * ranges with Datastore.extentMap.
 */
import { FailedPreconditionError, InvalidArgumentError, quote } from "../errors.js";
import { joinPath, splitPath, type Datastore } from "./datastore.js";
import { isNaa6, parseRdmMapping, serializeRdmMapping, type RdmMapping } from "./rdm-mapping.js";
import { SECTOR, buildFlatDescriptor, buildRdmDescriptor, parseVmdkDescriptor, serializeVmdkDescriptor, vmdkCapacity, vmdkKind, type VmdkDescriptor, type VmdkKind } from "./vmdk-descriptor.js";
import { buildVmx, parseVmx, type Vmx } from "./vmx.js";

export type VmDiskSpec = { kind: "vmdk"; capacityBytes: number } | { kind: "rdm"; naa: string; capacityBytes: number; lun?: string };

export interface VmSpec {
  name: string;
  /** In scsi0 unit order. */
  disks: VmDiskSpec[];
}

export interface VmDiskInfo {
  /** "scsi0:1" */
  slot: string;
  descriptorPath: string;
  descriptor: VmdkDescriptor;
  kind: VmdkKind;
  capacity: number;
  /** Virtual disks: the datastore path of the flat extent file. */
  flatPath?: string;
  /** RDMs: the mapping file and what it says. */
  mappingPath?: string;
  rdm?: RdmMapping;
}

export interface VmInfo {
  name: string;
  dir: string;
  vmxPath: string;
  vmx: Vmx;
  disks: VmDiskInfo[];
}

const VM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/;

function dirOf(path: string): string {
  return joinPath(splitPath(path).slice(0, -1));
}

function resolveIn(dir: string, name: string): string {
  return name.startsWith("/") ? joinPath(splitPath(name)) : joinPath([...splitPath(dir), ...splitPath(name)]);
}

/** Writes a new VM directory: descriptors, thin flat files, RDM mapping files, then the VMX. */
export async function createVm(ds: Datastore, spec: VmSpec): Promise<VmInfo> {
  if (!VM_NAME.test(spec.name)) throw new InvalidArgumentError(`invalid VM name ${quote(spec.name)}`);
  if (spec.disks.length === 0) throw new InvalidArgumentError("a VM needs at least one disk");
  const dir = `/${spec.name}`;
  await ds.mkdir(dir);
  const files: { fileName: string; mode?: string }[] = [];
  for (const [i, d] of spec.disks.entries()) {
    const base = i === 0 ? spec.name : `${spec.name}_${i}`;
    if (d.capacityBytes % SECTOR !== 0 || d.capacityBytes <= 0) throw new InvalidArgumentError(`disk ${i}: capacity ${d.capacityBytes} is not a positive multiple of ${SECTOR}`);
    if (d.kind === "vmdk") {
      const desc = buildFlatDescriptor({ name: base, capacityBytes: d.capacityBytes });
      await ds.create(`${dir}/${base}-flat.vmdk`, { size: d.capacityBytes });
      await ds.writeFile(`${dir}/${base}.vmdk`, Buffer.from(serializeVmdkDescriptor(desc)));
      files.push({ fileName: `${base}.vmdk` });
    } else {
      if (!isNaa6(d.naa)) throw new InvalidArgumentError(`disk ${i}: ${quote(d.naa)} is not an NAA-6 identifier`);
      const mapping: RdmMapping = { mode: "physical", naa: d.naa.toLowerCase(), capacity: d.capacityBytes };
      if (d.lun !== undefined) mapping.lun = d.lun;
      const desc = buildRdmDescriptor({ name: base, capacityBytes: d.capacityBytes });
      await ds.writeFile(`${dir}/${base}-rdmp.vmdk`, Buffer.from(serializeRdmMapping(mapping)));
      await ds.writeFile(`${dir}/${base}.vmdk`, Buffer.from(serializeVmdkDescriptor(desc)));
      files.push({ fileName: `${base}.vmdk`, mode: "independent-persistent" });
    }
  }
  const vmx = buildVmx({ name: spec.name, disks: files });
  await ds.writeFile(`${dir}/${spec.name}.vmx`, Buffer.from(vmx.toString()));
  return readVm(ds, dir);
}

/** Parses a VM directory: its (single) VMX, and every disk's descriptor and extent or mapping file. */
export async function readVm(ds: Datastore, dir: string): Promise<VmInfo> {
  const entries = await ds.list(dir);
  const vmxs = entries.filter((e) => e.kind === "file" && e.name.endsWith(".vmx"));
  if (vmxs.length !== 1) throw new FailedPreconditionError(`${dir}: expected one .vmx file, found ${vmxs.length}`);
  const vmxPath = (vmxs[0] as (typeof vmxs)[number]).path;
  const vmx = parseVmx((await ds.readFile(vmxPath)).toString("utf8"), vmxPath);
  const disks: VmDiskInfo[] = [];
  for (const d of vmx.disks()) {
    const descriptorPath = resolveIn(dir, d.fileName);
    const descriptor = parseVmdkDescriptor((await ds.readFile(descriptorPath)).toString("utf8"), descriptorPath);
    const kind = vmdkKind(descriptor);
    const info: VmDiskInfo = { slot: d.slot, descriptorPath, descriptor, kind, capacity: vmdkCapacity(descriptor) };
    const extent = descriptor.extents[0];
    if (descriptor.extents.length !== 1 || extent === undefined) throw new FailedPreconditionError(`${descriptorPath}: expected exactly one extent`);
    const extentPath = resolveIn(dirOf(descriptorPath), extent.fileName);
    if (kind === "flat") info.flatPath = extentPath;
    else {
      info.mappingPath = extentPath;
      info.rdm = parseRdmMapping((await ds.readFile(extentPath)).toString("utf8"), extentPath);
    }
    disks.push(info);
  }
  const name = vmx.get("displayName") ?? splitPath(dir).pop() ?? dir;
  return { name, dir: joinPath(splitPath(dir)), vmxPath, vmx, disks };
}

/** Directories directly under the root that hold a .vmx file. */
export async function listVms(ds: Datastore): Promise<string[]> {
  const out: string[] = [];
  for (const e of await ds.list("/")) {
    if (e.kind !== "dir") continue;
    if ((await ds.list(e.path)).some((f) => f.kind === "file" && f.name.endsWith(".vmx"))) out.push(e.path);
  }
  return out;
}

/** Grows a virtual disk: the flat file first (a hole), then the descriptor's extent size. */
export async function growVmdk(ds: Datastore, disk: VmDiskInfo, capacityBytes: number): Promise<VmDiskInfo> {
  if (disk.kind !== "flat" || disk.flatPath === undefined) throw new FailedPreconditionError(`${disk.descriptorPath}: only virtual disks grow`);
  if (capacityBytes % SECTOR !== 0 || capacityBytes < disk.capacity) throw new InvalidArgumentError(`new capacity ${capacityBytes} must be a multiple of ${SECTOR} and at least ${disk.capacity}`);
  await ds.truncate(disk.flatPath, capacityBytes);
  const extents = disk.descriptor.extents.map((x) => ({ ...x, sectors: capacityBytes / SECTOR }));
  const descriptor: VmdkDescriptor = { ...disk.descriptor, extents };
  await ds.writeFile(disk.descriptorPath, Buffer.from(serializeVmdkDescriptor(descriptor)));
  return { ...disk, descriptor, capacity: capacityBytes };
}
