/**
 * VMX files: a VM's configuration, `key = "value"` per line.
 *
 * Keys are case-insensitive (as VMware treats them) and kept in file order.
 * Values are always double-quoted; inside them VMware's `|XX` hex escape encodes
 * characters such as `"` (|22) and `|` (|7C). Virtual disks are
 * `<bus><controller>:<unit>.fileName` entries, e.g. `scsi0:1.fileName = "vm1_1.vmdk"`.
 */
import { InvalidArgumentError } from "../errors.js";
import { isSkippable, lineError, parseKeyValue, splitLines } from "./text-lines.js";

export interface VmxEntry {
  key: string;
  value: string;
}

export interface VmxDisk {
  bus: "scsi" | "sata" | "ide" | "nvme";
  controller: number;
  unit: number;
  /** "scsi0:1" */
  slot: string;
  fileName: string;
  deviceType: string | undefined;
  mode: string | undefined;
}

export class Vmx {
  private readonly list: VmxEntry[] = [];

  get entries(): readonly VmxEntry[] {
    return this.list;
  }

  get(key: string): string | undefined {
    const k = key.toLowerCase();
    return this.list.find((e) => e.key.toLowerCase() === k)?.value;
  }

  set(key: string, value: string): this {
    const k = key.toLowerCase();
    const at = this.list.findIndex((e) => e.key.toLowerCase() === k);
    if (at >= 0) this.list[at] = { key: this.list[at]?.key ?? key, value };
    else this.list.push({ key, value });
    return this;
  }

  delete(key: string): boolean {
    const k = key.toLowerCase();
    const at = this.list.findIndex((e) => e.key.toLowerCase() === k);
    if (at >= 0) this.list.splice(at, 1);
    return at >= 0;
  }

  /** Present virtual disks, sorted by bus, controller and unit. */
  disks(): VmxDisk[] {
    const out: VmxDisk[] = [];
    for (const e of this.list) {
      const m = /^(scsi|sata|ide|nvme)(\d+):(\d+)\.filename$/i.exec(e.key);
      if (m === null) continue;
      const bus = (m[1] ?? "").toLowerCase() as VmxDisk["bus"];
      const slot = `${bus}${m[2]}:${m[3]}`;
      if (this.get(`${slot}.present`)?.toUpperCase() === "FALSE") continue;
      const deviceType = this.get(`${slot}.deviceType`);
      if (deviceType !== undefined && /cdrom/i.test(deviceType)) continue;
      out.push({ bus, controller: Number(m[2]), unit: Number(m[3]), slot, fileName: e.value, deviceType, mode: this.get(`${slot}.mode`) });
    }
    return out.sort((a, b) => (a.bus < b.bus ? -1 : a.bus > b.bus ? 1 : a.controller - b.controller || a.unit - b.unit));
  }

  toString(): string {
    return this.list.map((e) => `${e.key} = "${escapeValue(e.value)}"\n`).join("");
  }
}

export function parseVmx(text: string, source = "vmx"): Vmx {
  const vmx = new Vmx();
  const seen = new Set<string>();
  for (const line of splitLines(text)) {
    if (isSkippable(line)) continue;
    const kv = parseKeyValue(source, line);
    if (!kv.quoted) throw lineError(source, line, `value of ${kv.key} must be double-quoted`);
    const k = kv.key.toLowerCase();
    if (seen.has(k)) throw lineError(source, line, `duplicate key ${kv.key}`);
    seen.add(k);
    let value: string;
    try {
      value = unescapeValue(kv.value);
    } catch (e: unknown) {
      throw lineError(source, line, e instanceof Error ? e.message : String(e));
    }
    vmx.set(kv.key, value);
  }
  return vmx;
}

export function serializeVmx(vmx: Vmx): string {
  return vmx.toString();
}

function unescapeValue(v: string): string {
  return v.replace(/\|(..)?/g, (m, hex: string | undefined) => {
    if (hex === undefined || !/^[0-9A-Fa-f]{2}$/.test(hex)) throw new Error(`bad escape "${m}" (expected |XX with two hex digits)`);
    return String.fromCharCode(parseInt(hex, 16));
  });
}

function escapeValue(v: string): string {
  return v.replace(/[|"#\x00-\x1f]/g, (c) => `|${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`);
}

export interface VmxSpec {
  name: string;
  guestOS?: string;
  memoryMB?: number;
  numvcpus?: number;
  uuid?: string;
  /** Disk descriptor file names, in order: unit 0, 1, … on scsi0 (unit 7 is the controller's, skipped). */
  disks: { fileName: string; mode?: string }[];
}

/** A minimal VMX for a VM with its disks on scsi0. */
export function buildVmx(spec: VmxSpec): Vmx {
  if (spec.disks.length > 15) throw new InvalidArgumentError("at most 15 disks fit on scsi0");
  const vmx = new Vmx()
    .set(".encoding", "UTF-8")
    .set("config.version", "8")
    .set("virtualHW.version", "19")
    .set("displayName", spec.name)
    .set("guestOS", spec.guestOS ?? "other-64")
    .set("memSize", String(spec.memoryMB ?? 1024))
    .set("numvcpus", String(spec.numvcpus ?? 1))
    .set("scsi0.present", "TRUE")
    .set("scsi0.virtualDev", "lsilogic");
  if (spec.uuid !== undefined) vmx.set("uuid.bios", spec.uuid);
  let unit = 0;
  for (const d of spec.disks) {
    if (unit === 7) unit++;
    const slot = `scsi0:${unit}`;
    vmx.set(`${slot}.present`, "TRUE").set(`${slot}.fileName`, d.fileName).set(`${slot}.deviceType`, "scsi-hardDisk");
    if (d.mode !== undefined) vmx.set(`${slot}.mode`, d.mode);
    unit++;
  }
  return vmx;
}
