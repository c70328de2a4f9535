/**
 * Limits on every string, bytes and repeated field of the requests both
 * daemons accept (ArrayService, HypervisorService), in one table that the
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
 */
import { InvalidArgumentError } from "../errors.js";

/** A bound on one field: `bytes` for strings and bytes, `items` for repeated fields (`each` bounds the elements' own fields). */
export interface FieldLimit {
  readonly bytes?: number;
  readonly items?: number;
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
};

function snake(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function isMessage(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !(v instanceof Uint8Array) && !Array.isArray(v);
}

function checkValue(path: string, v: unknown, limit: FieldLimit | undefined): void {
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
    const inner = l.each?.[""];
    if (inner?.bytes !== undefined) parts.push(`each ${inner.bytes} bytes`);
    if (l.bytes !== undefined) parts.push(`${l.bytes} bytes`);
    return parts.join(", ");
  };
  for (const [service, methods] of Object.entries(REQUEST_LIMITS)) {
    const short = service.slice(service.lastIndexOf(".") + 1);
    for (const [method, fields] of Object.entries(methods)) {
      for (const [field, l] of Object.entries(fields)) {
        rows.push(`| ${short} | ${method} | \`${field}\` | ${describe(l)} |`);
        for (const [sub, sl] of Object.entries(l.each ?? {})) if (sub !== "") rows.push(`| ${short} | ${method} | \`${field}[].${sub}\` | ${describe(sl)} |`);
      }
    }
  }
  return rows.join("\n");
}
