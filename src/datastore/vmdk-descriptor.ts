/**
 * VMDK text descriptors, following VMware's Virtual Disk Format 1.1 grammar:
 *
 *   # Disk DescriptorFile
 *   version=1
 *   encoding="UTF-8"
 *   CID=fffffffe
 *   parentCID=ffffffff
 *   createType="vmfs"
 *
 *   # Extent description
 *   RW 16777216 VMFS "vm1-flat.vmdk"
 *
 *   # The Disk Data Base
 *   #DDB
 *
 *   ddb.adapterType = "lsilogic"
 *   ddb.virtualHWVersion = "19"
 *
 * Extent lines are `ACCESS SECTORS TYPE "FILE" [OFFSET]` with 512-byte sectors.
 * A virtual disk is `createType="vmfs"` with one VMFS extent (its `-flat.vmdk`);
 * a physical-mode RDM is `createType="vmfsPassthroughRawDeviceMap"` with one
 * VMFSRAW extent naming its `-rdmp.vmdk` mapping file (see rdm-mapping.ts).
 */
import { randomBytes } from "node:crypto";
import { InvalidArgumentError, quote } from "../errors.js";
import { isSkippable, lineError, parseKeyValue, splitLines, type Line } from "./text-lines.js";

export const SECTOR = 512;
export type ExtentAccess = "RW" | "RDONLY" | "NOACCESS";
const ACCESS: readonly string[] = ["RW", "RDONLY", "NOACCESS"];
const EXTENT_TYPES: readonly string[] = ["FLAT", "SPARSE", "ZERO", "VMFS", "VMFSSPARSE", "VMFSRDM", "VMFSRAW"];

/** The extent type each createType we accept must use. */
const CREATE_TYPES: Record<string, string> = {
  vmfs: "VMFS",
  vmfsPassthroughRawDeviceMap: "VMFSRAW",
  vmfsRawDeviceMap: "VMFSRDM",
  monolithicFlat: "FLAT",
};

export interface VmdkExtent {
  access: ExtentAccess;
  sectors: number;
  type: string;
  fileName: string;
  /** Sector offset into the file (FLAT extents only). */
  offset?: number;
}

export interface VmdkDescriptor {
  version: number;
  cid: number;
  parentCid: number;
  createType: string;
  /** Other header keys (encoding, isNativeSnapshot, …), in order, values unquoted. */
  header: [string, string][];
  extents: VmdkExtent[];
  /** ddb.* entries in order, keys without the "ddb." prefix. */
  ddb: [string, string][];
}

export type VmdkKind = "flat" | "rdm-physical" | "rdm-virtual";

export function vmdkKind(d: VmdkDescriptor): VmdkKind {
  if (d.createType === "vmfsPassthroughRawDeviceMap") return "rdm-physical";
  if (d.createType === "vmfsRawDeviceMap") return "rdm-virtual";
  return "flat";
}

/** Capacity in bytes: the sum of the extents. */
export function vmdkCapacity(d: VmdkDescriptor): number {
  return d.extents.reduce((n, x) => n + x.sectors * SECTOR, 0);
}

const EXTENT_LINE = /^(\S+)\s+(\S+)\s+(\S+)\s+"([^"]*)"(?:\s+(\S+))?$/;
const HEX32 = /^[0-9a-fA-F]{1,8}$/;

export function parseVmdkDescriptor(text: string, source = "vmdk descriptor"): VmdkDescriptor {
  const lines = splitLines(text);
  const first = lines.find((l) => l.text.trim() !== "");
  if (first === undefined || !/^#\s*Disk DescriptorFile$/i.test(first.text.trim())) {
    throw lineError(source, first ?? 1, 'expected "# Disk DescriptorFile" as the first line');
  }
  const header = new Map<string, { value: string; line: Line }>();
  const extents: VmdkExtent[] = [];
  const ddb: [string, string][] = [];
  let sawDdb = false;
  for (const line of lines) {
    if (isSkippable(line)) continue;
    const t = line.text.trim();
    const ext = EXTENT_LINE.exec(t);
    if (ext !== null && ACCESS.includes(ext[1] ?? "")) {
      if (header.size === 0 || sawDdb) throw lineError(source, line, "extent line outside the extent section");
      const sectors = Number(ext[2]);
      if (!/^\d+$/.test(ext[2] ?? "") || !Number.isSafeInteger(sectors)) throw lineError(source, line, `invalid sector count ${quote(ext[2])}`);
      const type = ext[3] ?? "";
      if (!EXTENT_TYPES.includes(type)) throw lineError(source, line, `unknown extent type ${quote(type)}`);
      const fileName = ext[4] ?? "";
      if (fileName === "" || fileName.includes("/")) throw lineError(source, line, `invalid extent file name ${quote(fileName)}`);
      const x: VmdkExtent = { access: ext[1] as ExtentAccess, sectors, type, fileName };
      if (ext[5] !== undefined) {
        if (!/^\d+$/.test(ext[5])) throw lineError(source, line, `invalid extent offset ${quote(ext[5])}`);
        x.offset = Number(ext[5]);
      }
      extents.push(x);
      continue;
    }
    if (/^[A-Z]+\s+\d/.test(t)) throw lineError(source, line, `malformed extent line ${quote(t)}`);
    const kv = parseKeyValue(source, line);
    if (kv.key.startsWith("ddb.")) {
      sawDdb = true;
      if (!kv.quoted) throw lineError(source, line, `value of ${kv.key} must be double-quoted`);
      ddb.push([kv.key.slice(4), kv.value]);
      continue;
    }
    if (extents.length > 0 || sawDdb) throw lineError(source, line, `header key ${kv.key} after the extent section`);
    if (header.has(kv.key)) throw lineError(source, line, `duplicate key ${kv.key}`);
    header.set(kv.key, { value: kv.value, line });
  }
  const need = (key: string): { value: string; line: Line } => {
    const v = header.get(key);
    if (v === undefined) throw lineError(source, lines.length, `missing ${key}`);
    return v;
  };
  const version = need("version");
  if (version.value !== "1") throw lineError(source, version.line, `unsupported version ${version.value}`);
  const cid = need("CID");
  if (!HEX32.test(cid.value)) throw lineError(source, cid.line, `CID must be 8 hex digits, got ${quote(cid.value)}`);
  const parent = need("parentCID");
  if (!HEX32.test(parent.value)) throw lineError(source, parent.line, `parentCID must be 8 hex digits, got ${quote(parent.value)}`);
  const ct = need("createType");
  const wantType = CREATE_TYPES[ct.value];
  if (wantType === undefined) throw lineError(source, ct.line, `unsupported createType ${quote(ct.value)} (expected one of ${Object.keys(CREATE_TYPES).join(", ")})`);
  if (extents.length === 0) throw lineError(source, lines.length, "no extent lines");
  for (const x of extents) {
    if (x.type !== wantType) throw lineError(source, ct.line, `createType ${quote(ct.value)} needs ${wantType} extents, found ${x.type} (${quote(x.fileName)})`);
  }
  const rest: [string, string][] = [];
  for (const [k, v] of header) if (!["version", "CID", "parentCID", "createType"].includes(k)) rest.push([k, v.value]);
  return { version: 1, cid: parseInt(cid.value, 16), parentCid: parseInt(parent.value, 16), createType: ct.value, header: rest, extents, ddb };
}

const hex8 = (n: number): string => (n >>> 0).toString(16).padStart(8, "0");

export function serializeVmdkDescriptor(d: VmdkDescriptor): string {
  const out: string[] = ["# Disk DescriptorFile", `version=${d.version}`];
  const enc = d.header.find(([k]) => k === "encoding");
  if (enc !== undefined) out.push(`encoding="${enc[1]}"`);
  out.push(`CID=${hex8(d.cid)}`, `parentCID=${hex8(d.parentCid)}`);
  for (const [k, v] of d.header) if (k !== "encoding") out.push(`${k}="${v}"`);
  out.push(`createType="${d.createType}"`, "", "# Extent description");
  for (const x of d.extents) {
    if (x.fileName.includes('"')) throw new InvalidArgumentError(`extent file name may not contain quotes: ${x.fileName}`);
    out.push(`${x.access} ${x.sectors} ${x.type} "${x.fileName}"${x.offset !== undefined ? ` ${x.offset}` : ""}`);
  }
  out.push("", "# The Disk Data Base", "#DDB", "");
  for (const [k, v] of d.ddb) out.push(`ddb.${k} = "${v}"`);
  return out.join("\n") + "\n";
}

export interface DiskDescriptorSpec {
  /** The disk's base name: "vm1" gives vm1.vmdk, vm1-flat.vmdk / vm1-rdmp.vmdk. */
  name: string;
  capacityBytes: number;
  adapterType?: string;
  cid?: number;
}

function checkCapacity(bytes: number): number {
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % SECTOR !== 0) throw new InvalidArgumentError(`capacity ${bytes} is not a positive multiple of ${SECTOR}`);
  return bytes / SECTOR;
}

function commonDdb(sectors: number, adapterType: string): [string, string][] {
  const heads = 255;
  const spt = 63;
  const cylinders = Math.min(65535, Math.max(1, Math.floor(sectors / (heads * spt))));
  const uuid = [...randomBytes(16)].map((b) => b.toString(16).padStart(2, "0"));
  return [
    ["adapterType", adapterType],
    ["geometry.cylinders", String(cylinders)],
    ["geometry.heads", String(heads)],
    ["geometry.sectors", String(spt)],
    ["longContentID", randomBytes(16).toString("hex")],
    ["uuid", `${uuid.slice(0, 8).join(" ")}-${uuid.slice(8).join(" ")}`],
    ["virtualHWVersion", "19"],
  ];
}

/** `createType="vmfs"`: a thin virtual disk whose data is `<name>-flat.vmdk`. */
export function buildFlatDescriptor(spec: DiskDescriptorSpec): VmdkDescriptor {
  const sectors = checkCapacity(spec.capacityBytes);
  return {
    version: 1,
    cid: spec.cid ?? randomBytes(4).readUInt32LE(0),
    parentCid: 0xffffffff,
    createType: "vmfs",
    header: [["encoding", "UTF-8"]],
    extents: [{ access: "RW", sectors, type: "VMFS", fileName: `${spec.name}-flat.vmdk` }],
    ddb: [...commonDdb(sectors, spec.adapterType ?? "lsilogic"), ["thinProvisioned", "1"]],
  };
}

/** `createType="vmfsPassthroughRawDeviceMap"`: a physical RDM whose mapping file is `<name>-rdmp.vmdk`. */
export function buildRdmDescriptor(spec: DiskDescriptorSpec): VmdkDescriptor {
  const sectors = checkCapacity(spec.capacityBytes);
  return {
    version: 1,
    cid: spec.cid ?? randomBytes(4).readUInt32LE(0),
    parentCid: 0xffffffff,
    createType: "vmfsPassthroughRawDeviceMap",
    header: [["encoding", "UTF-8"]],
    extents: [{ access: "RW", sectors, type: "VMFSRAW", fileName: `${spec.name}-rdmp.vmdk` }],
    ddb: commonDdb(sectors, spec.adapterType ?? "lsilogic"),
  };
}
