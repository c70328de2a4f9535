/**
 * The array's control-plane catalogue that the block store does not own: hosts
 * (initiators with their TLS-PSK identity and key), LUN-to-host mappings, and
 * NBD export records, plus the array serial. A few hundred records at most, so it
 * lives in memory and is persisted as one JSON file in the data directory,
 * written atomically (write temp, fsync, rename, fsync the directory) after
 * every change. A crash leaves either the old or the new file, never a torn one.
 *
 * References to LUNs and snapshots are by id; the service keeps them consistent
 * (a mapped or exported LUN/snapshot cannot be deleted).
 */
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { CorruptError, errorMessage, quote } from "../../../src/errors.js";
import { readFileIfExists, writeFileAtomic } from "../../../src/fsio/durable-fs.js";

export interface HostRecord {
  id: string;
  name: string;
  pskIdentity: string;
  /** Hex. Never leaves the array through the API. */
  pskKey: string;
  createdAt: string;
}

export interface MappingRecord {
  lunId: string;
  hostId: string;
}

export type ExportKind = "lun" | "snapshot";

export interface ExportRecord {
  id: string;
  kind: ExportKind;
  lunId: string;
  /** Set for snapshot exports. */
  snapshotId: string | null;
  /** null = the local host (Unix socket, no TLS). */
  hostId: string | null;
  createdAt: string;
}

export interface ControlData {
  version: 1;
  serial: string;
  hosts: HostRecord[];
  mappings: MappingRecord[];
  exports: ExportRecord[];
}

export const CONTROL_FILE = "control.json";

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
function str(o: Record<string, unknown>, k: string, where: string): string {
  const v = o[k];
  if (typeof v !== "string") throw new CorruptError(`${where}: field ${quote(k)} is not a string`);
  return v;
}
function strOrNull(o: Record<string, unknown>, k: string, where: string): string | null {
  const v = o[k];
  if (v === null) return null;
  if (typeof v !== "string") throw new CorruptError(`${where}: field ${quote(k)} is not a string or null`);
  return v;
}
function list(o: Record<string, unknown>, k: string, where: string): Record<string, unknown>[] {
  const v = o[k];
  if (!Array.isArray(v) || !v.every(isRecord)) throw new CorruptError(`${where}: ${quote(k)} is not a list of objects`);
  return v;
}

/** Narrows the parsed file; any shape error is CORRUPT (the file is ours). */
export function parseControl(text: string, where: string): ControlData {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e: unknown) {
    throw new CorruptError(`${where}: not JSON: ${errorMessage(e)}`);
  }
  if (!isRecord(raw) || raw.version !== 1) throw new CorruptError(`${where}: unknown format`);
  return {
    version: 1,
    serial: str(raw, "serial", where),
    hosts: list(raw, "hosts", where).map((h) => ({
      id: str(h, "id", where),
      name: str(h, "name", where),
      pskIdentity: str(h, "pskIdentity", where),
      pskKey: str(h, "pskKey", where),
      createdAt: str(h, "createdAt", where),
    })),
    mappings: list(raw, "mappings", where).map((m) => ({ lunId: str(m, "lunId", where), hostId: str(m, "hostId", where) })),
    exports: list(raw, "exports", where).map((e) => {
      const kind = str(e, "kind", where);
      if (kind !== "lun" && kind !== "snapshot") throw new CorruptError(`${where}: export kind ${quote(kind)}`);
      return {
        id: str(e, "id", where),
        kind,
        lunId: str(e, "lunId", where),
        snapshotId: strOrNull(e, "snapshotId", where),
        hostId: strOrNull(e, "hostId", where),
        createdAt: str(e, "createdAt", where),
      };
    }),
  };
}

export class ControlState {
  private constructor(
    private readonly path: string,
    public data: ControlData,
  ) {}

  static async open(dir: string): Promise<ControlState> {
    const path = join(dir, CONTROL_FILE);
    const text = await readFileIfExists(path);
    if (text === undefined) {
      const s = new ControlState(path, { version: 1, serial: `SBX${randomBytes(6).toString("hex").toUpperCase()}`, hosts: [], mappings: [], exports: [] });
      await s.save();
      return s;
    }
    return new ControlState(path, parseControl(text, path));
  }

  /** Atomically replaces the file with the current data. */
  save(): Promise<void> {
    return writeFileAtomic(this.path, `${JSON.stringify(this.data, null, 1)}\n`, dirname(this.path), 0o600);
  }
}

