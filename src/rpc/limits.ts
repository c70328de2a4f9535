/**
 * Limits on every string, bytes, map and repeated field of the requests the
 * daemons accept (ArrayService, HypervisorService, the CSI services), in one table that the
 * server checks (server.ts, before the implementation runs) and that
 * docs/contract.md "Limits" states; test/unit/rpc/limits.test.ts keeps the
 * table, the .proto files and the docs in step.
 *
 * Why: a field has to be bounded before anything looks at it. An unbounded
 * name used to travel into an error message, then into the reply's trailers,
 * and past about 64 KiB of headers the reply never arrived (issue 17). Now a
 * field past its limit is INVALID_ARGUMENT naming the field and the limit,
 * without quoting it, and whole messages past RECEIVE_LIMIT_BYTES are refused by
 * grpc-js with RESOURCE_EXHAUSTED before they are decoded.
 *
 * Sizes are UTF-8 bytes (as CSI states its limits), counts are elements. A
 * field the table does not list (a service added later) still gets the
 * DEFAULT_* bounds, so no request field is ever unbounded.
 *
 * The CSI rows follow the CSI spec's "Size Limits" (spec.md, Field
 * Requirements): 128 bytes for a string, 4 KiB for a map<string, string>
 * (keys and values together). Two exceptions, both for the array's own
 * values: `starting_token` takes the array's paging tokens (TOKEN_BYTES, as
 * on ArrayService), and repeated fields, which CSI leaves uncounted, get
 * explicit counts so none is unbounded.
 */
import { InvalidArgumentError } from "../errors.js";

/** A bound on one field: `bytes` for strings and bytes, `items` for repeated fields (`each` bounds the elements' own fields). */
export interface FieldLimit {
  readonly bytes?: number;
  readonly items?: number;
  /** A map<string, string>: its keys and values together, in UTF-8 bytes. */
  readonly mapBytes?: number;
  readonly each?: FieldLimits;
}
/** Keyed by the field's .proto name (snake_case). */
export type FieldLimits = Readonly<Record<string, FieldLimit>>;

/** The largest request message a server decodes; past it grpc-js answers RESOURCE_EXHAUSTED. Requests are small: the longest is a CreateSnapshot of MAX_GROUP_MEMBERS ids. */
export const RECEIVE_LIMIT_BYTES = 1024 * 1024;

export const NAME_BYTES = 128;
export const ID_BYTES = 128;
export const TOKEN_BYTES = 4096;
export const MAX_GROUP_MEMBERS = 64;
export const MAX_VM_DISKS = 64;
/** Bounds for a field no row names. */
export const DEFAULT_STRING_BYTES = 1024;
export const DEFAULT_ITEMS = 1024;

const NAME: FieldLimit = { bytes: NAME_BYTES };
const ID: FieldLimit = { bytes: ID_BYTES };
const TOKEN: FieldLimit = { bytes: TOKEN_BYTES };

/** CSI spec "Size Limits". */
export const CSI_STRING_BYTES = 128;
export const CSI_MAP_BYTES = 4096;
/** Counts for CSI's repeated request fields (the spec sets none). */
export const CSI_MAX_CAPABILITIES = 16;
export const CSI_MAX_TOPOLOGIES = 64;
const CSTR: FieldLimit = { bytes: CSI_STRING_BYTES };
const CMAP: FieldLimit = { mapBytes: CSI_MAP_BYTES };
const CIDS: FieldLimit = { items: MAX_GROUP_MEMBERS, each: { "": CSTR } };
const TOPOLOGIES: FieldLimit = { items: CSI_MAX_TOPOLOGIES, each: { segments: CMAP } };

/** service full name -> RPC name (as the .proto spells it) -> the request's fields. */
export const REQUEST_LIMITS: Readonly<Record<string, Readonly<Record<string, FieldLimits>>>> = {
  "sanbox.array.v1.ArrayService": {
    GetArrayInfo: {},
    GetPoolStats: {},
    CreateLun: { name: NAME },
    GetLun: { lun_id: ID, name: NAME },
    ListLuns: { starting_token: TOKEN },
    ResizeLun: { lun_id: ID },
    DeleteLun: { lun_id: ID },
    CreateHost: { name: NAME, psk_identity: { bytes: 128 }, psk_key: { bytes: 256 } },
    ListHosts: { starting_token: TOKEN },
    DeleteHost: { host_id: ID },
    MapLun: { lun_id: ID, host_id: ID },
    UnmapLun: { lun_id: ID, host_id: ID },
    CreateSnapshot: { name: NAME, lun_ids: { items: MAX_GROUP_MEMBERS, each: { "": ID } } },
    GetSnapshot: { snapshot_id: ID },
    ListSnapshots: { starting_token: TOKEN, lun_id: ID, group_snapshot_id: ID, snapshot_id: ID },
    DeleteSnapshot: { snapshot_id: ID },
    GetGroupSnapshot: { group_snapshot_id: ID },
    DeleteGroupSnapshot: { group_snapshot_id: ID, snapshot_ids: { items: MAX_GROUP_MEMBERS, each: { "": ID } } },
    GetChangedBlocks: { base_snapshot_id: ID, target_snapshot_id: ID, lun_id: ID },
    GetAllocatedBlocks: { snapshot_id: ID, lun_id: ID },
    RevertLun: { lun_id: ID, snapshot_id: ID },
    CloneSnapshot: { snapshot_id: ID, name: NAME },
    CreateExport: { lun_id: ID, snapshot_id: ID, host_id: ID },
    ListExports: { starting_token: TOKEN, host_id: ID },
    DeleteExport: { export_id: ID },
  },
  "sanbox.hypervisor.v1.HypervisorService": {
    ListVms: {},
    GetVm: { name: NAME },
    CreateVm: { name: NAME, datastore_lun: NAME, disks: { items: MAX_VM_DISKS, each: { lun: NAME } } },
    DeleteVm: { name: NAME },
    StartWorkload: { vm: NAME, workload: { bytes: 32 } },
    StopWorkload: { vm: NAME },
    GetWorkloadStatus: { vm: NAME },
    QuiesceVm: { vm: NAME },
    ResumeVm: { vm: NAME },
  },
  "csi.v1.Identity": {
    GetPluginInfo: {},
    GetPluginCapabilities: {},
    Probe: {},
  },
  "csi.v1.Controller": {
    CreateVolume: {
      name: CSTR,
      volume_capabilities: {
        items: CSI_MAX_CAPABILITIES,
        each: { mount: { each: { fs_type: CSTR, mount_flags: { items: CSI_MAX_CAPABILITIES, each: { "": CSTR } }, volume_mount_group: CSTR } } },
      },
      parameters: CMAP,
      secrets: CMAP,
      volume_content_source: { each: { snapshot: { each: { snapshot_id: CSTR } }, volume: { each: { volume_id: CSTR } } } },
      accessibility_requirements: { each: { requisite: TOPOLOGIES, preferred: TOPOLOGIES } },
      mutable_parameters: CMAP,
    },
    DeleteVolume: { volume_id: CSTR, secrets: CMAP },
    ListVolumes: { starting_token: TOKEN },
    ControllerGetCapabilities: {},
    CreateSnapshot: { source_volume_id: CSTR, name: CSTR, secrets: CMAP, parameters: CMAP },
    DeleteSnapshot: { snapshot_id: CSTR, secrets: CMAP },
    ListSnapshots: { starting_token: TOKEN, source_volume_id: CSTR, snapshot_id: CSTR, secrets: CMAP },
  },
  "csi.v1.GroupController": {
    GroupControllerGetCapabilities: {},
    CreateVolumeGroupSnapshot: { name: CSTR, source_volume_ids: CIDS, secrets: CMAP, parameters: CMAP },
    DeleteVolumeGroupSnapshot: { group_snapshot_id: CSTR, snapshot_ids: CIDS, secrets: CMAP },
    GetVolumeGroupSnapshot: { group_snapshot_id: CSTR, snapshot_ids: CIDS, secrets: CMAP },
  },
  "csi.v1.SnapshotMetadata": {
    GetMetadataAllocated: { snapshot_id: CSTR, secrets: CMAP },
    GetMetadataDelta: { base_snapshot_id: CSTR, target_snapshot_id: CSTR, secrets: CMAP },
  },
};

function snake(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function isMessage(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !(v instanceof Uint8Array) && !Array.isArray(v);
}

function checkValue(path: string, v: unknown, limit: FieldLimit | undefined): void {
  if (limit?.mapBytes !== undefined && isMessage(v)) {
    // Keys are counted but never named: a map can be `secrets`.
    let size = 0;
    for (const [k, x] of Object.entries(v)) size += Buffer.byteLength(k, "utf8") + (typeof x === "string" ? Buffer.byteLength(x, "utf8") : 0);
    if (size > limit.mapBytes) throw new InvalidArgumentError(`${path} holds ${size} bytes of keys and values; the limit is ${limit.mapBytes} bytes`);
    return;
  }
  if (typeof v === "string" || v instanceof Uint8Array) {
    const max = limit?.bytes ?? DEFAULT_STRING_BYTES;
    const size = typeof v === "string" ? Buffer.byteLength(v, "utf8") : v.length;
    if (size > max) throw new InvalidArgumentError(`${path} is ${size} bytes; the limit is ${max} bytes`);
  } else if (Array.isArray(v)) {
    const max = limit?.items ?? DEFAULT_ITEMS;
    if (v.length > max) throw new InvalidArgumentError(`${path} has ${v.length} entries; the limit is ${max}`);
    // A repeated scalar's elements are bounded by each[""], a repeated message's by its fields' rows.
    v.forEach((x, i) => (isMessage(x) ? checkMessage(`${path}[${i}]`, x, limit?.each ?? {}) : checkValue(`${path}[${i}]`, x, limit?.each?.[""])));
  } else if (isMessage(v)) {
    checkMessage(path, v, limit?.each ?? {});
  }
}

function checkMessage(prefix: string, msg: Record<string, unknown>, limits: FieldLimits): void {
  for (const [key, v] of Object.entries(msg)) {
    const field = snake(key);
    checkValue(prefix === "" ? field : `${prefix}.${field}`, v, limits[field]);
  }
}

/** Throws INVALID_ARGUMENT for the first field of `req` past its limit. */
export function checkRequestLimits(service: string, method: string, req: unknown): void {
  if (!isMessage(req)) return;
  checkMessage("", req, REQUEST_LIMITS[service]?.[method] ?? {});
}

/** The Limits table of docs/contract.md, rendered from REQUEST_LIMITS (the docs test compares the two). */
export function limitsMarkdown(): string {
  const rows = ["| Service | Call | Field | Limit |", "|---|---|---|---|"];
  const describe = (l: FieldLimit): string => {
    const parts: string[] = [];
    if (l.items !== undefined) parts.push(`${l.items} entries`);
    if (l.mapBytes !== undefined) parts.push(`${l.mapBytes} bytes of keys and values`);
    const inner = l.each?.[""];
    if (inner?.bytes !== undefined) parts.push(`each ${inner.bytes} bytes`);
    if (l.bytes !== undefined) parts.push(`${l.bytes} bytes`);
    return parts.join(", ");
  };
  // A repeated field's elements are `field[].x`, a nested message's fields `field.x`; a row with no bound of its own (a message that only holds others) is left out.
  const walk = (short: string, method: string, fields: FieldLimits, prefix: string): void => {
    for (const [field, l] of Object.entries(fields)) {
      if (field === "") continue;
      const text = describe(l);
      if (text !== "") rows.push(`| ${short} | ${method} | \`${prefix}${field}\` | ${text} |`);
      walk(short, method, l.each ?? {}, `${prefix}${field}${l.items !== undefined ? "[]" : ""}.`);
    }
  };
  for (const [service, methods] of Object.entries(REQUEST_LIMITS)) {
    const short = service.startsWith("csi.") ? service : service.slice(service.lastIndexOf(".") + 1);
    for (const [method, fields] of Object.entries(methods)) walk(short, method, fields, "");
  }
  return rows.join("\n");
}
