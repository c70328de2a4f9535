/**
 * The RDM mapping file (`<name>-rdmp.vmdk`), sanbox's stand-in for VMFS's
 * proprietary raw-device-mapping file: a few `key=value` lines naming the array
 * LUN by its NAA identifier (docs/datastore-format.md, "RDM mapping file").
 *
 *   # sanbox RDM mapping file
 *   version=1
 *   mode="physical"
 *   naa="naa.65a4e42…"        (NAA-6: "naa.6" + 31 hex digits, 128 bits)
 *   capacity=268435456         (bytes, the LUN size when mapped)
 *   lun="db-logs"              (optional hint: the array's LUN name)
 *
 * The NAA id is authoritative; the plugin resolves it to a LUN through the array.
 */
import { InvalidArgumentError, quote } from "../errors.js";
import { isSkippable, lineError, parseKeyValue, splitLines, type Line } from "./text-lines.js";

export const RDM_MAPPING_HEADER = "# sanbox RDM mapping file";
const NAA6 = /^naa\.6[0-9a-f]{31}$/;

export interface RdmMapping {
  mode: "physical" | "virtual";
  /** Lower-case "naa.6…" */
  naa: string;
  capacity: number;
  lun?: string;
}

export function isNaa6(id: string): boolean {
  return NAA6.test(id.toLowerCase());
}

export function parseRdmMapping(text: string, source = "rdm mapping"): RdmMapping {
  const lines = splitLines(text);
  const first = lines.find((l) => l.text.trim() !== "");
  if (first === undefined || first.text.trim() !== RDM_MAPPING_HEADER) throw lineError(source, first ?? 1, `expected "${RDM_MAPPING_HEADER}" as the first line`);
  const kv = new Map<string, { value: string; line: Line }>();
  for (const line of lines) {
    if (isSkippable(line)) continue;
    const e = parseKeyValue(source, line);
    if (kv.has(e.key)) throw lineError(source, line, `duplicate key ${e.key}`);
    if (!["version", "mode", "naa", "capacity", "lun"].includes(e.key)) throw lineError(source, line, `unknown key ${e.key}`);
    kv.set(e.key, { value: e.value, line });
  }
  const need = (k: string): { value: string; line: Line } => {
    const v = kv.get(k);
    if (v === undefined) throw lineError(source, lines.length, `missing ${k}`);
    return v;
  };
  const version = need("version");
  if (version.value !== "1") throw lineError(source, version.line, `unsupported version ${version.value}`);
  const mode = need("mode");
  if (mode.value !== "physical" && mode.value !== "virtual") throw lineError(source, mode.line, `mode must be "physical" or "virtual", got ${quote(mode.value)}`);
  const naa = need("naa");
  if (!isNaa6(naa.value)) throw lineError(source, naa.line, `naa must be "naa.6" followed by 31 hex digits, got ${quote(naa.value)}`);
  const cap = need("capacity");
  if (!/^\d+$/.test(cap.value) || !Number.isSafeInteger(Number(cap.value)) || Number(cap.value) <= 0) throw lineError(source, cap.line, `invalid capacity ${quote(cap.value)}`);
  const out: RdmMapping = { mode: mode.value, naa: naa.value.toLowerCase(), capacity: Number(cap.value) };
  const lun = kv.get("lun");
  if (lun !== undefined) out.lun = lun.value;
  return out;
}

export function serializeRdmMapping(m: RdmMapping): string {
  if (!isNaa6(m.naa)) throw new InvalidArgumentError(`not an NAA-6 identifier: ${quote(m.naa)}`);
  if (!Number.isSafeInteger(m.capacity) || m.capacity <= 0) throw new InvalidArgumentError(`invalid capacity ${m.capacity}`);
  if (m.lun !== undefined && /["\n]/.test(m.lun)) throw new InvalidArgumentError(`invalid LUN name ${quote(m.lun)}`);
  const lines = [RDM_MAPPING_HEADER, "version=1", `mode="${m.mode}"`, `naa="${m.naa.toLowerCase()}"`, `capacity=${m.capacity}`];
  if (m.lun !== undefined) lines.push(`lun="${m.lun}"`);
  return lines.join("\n") + "\n";
}
