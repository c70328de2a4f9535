/**
 * The array's CSI services (proto/csi/v1/csi.proto, docs/contract.md "CSI")
 * driven by a generic gRPC client: @grpc/proto-loader reads the checked-in
 * .proto and grpc-js sends the calls, as any CO or vendor tool built from that
 * file would. No sanbox client code is on the path. Data goes in over NBD
 * (nbdsh), so the changed-block streams are checked against writes we made.
 */
import { join } from "node:path";
import { Client, credentials, status } from "@grpc/grpc-js";
import { loadSync, type MethodDefinition, type PackageDefinition } from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packageRoot } from "../../../src/package-root.js";
import type { ArrayDaemon } from "../../support/array-daemon.js";
import { bearer, callError, startGenericArray, streamCall, unaryCall, type GenericArray, type WireMethod } from "../../support/grpc-generic.js";
import { list, rec, text } from "../../support/grpc-reflection.js";
import { tool } from "../../support/tools.js";

const TOKEN = "csi-interop-token-0123456789";
const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
/** What we write between the two snapshots: [offset, length]. */
const WRITES: readonly [number, number][] = [
  [0, 4096],
  [3 * MiB + 100, 70_000],
  [SIZE - 512, 512],
];

function wire(def: PackageDefinition, service: string, name: string): WireMethod {
  const svc = def[service];
  if (svc === undefined || "format" in svc) throw new Error(`${service} is not a service in csi.proto`);
  const m: MethodDefinition<object, object> | undefined = svc[name];
  if (m === undefined) throw new Error(`${service} has no ${name}`);
  return { path: m.path, serialize: m.requestSerialize, deserialize: m.responseDeserialize };
}

function int(v: unknown, what: string): number {
  // longs: String keeps int64 exact on the wire; every value here is a safe integer.
  const n = typeof v === "string" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isSafeInteger(n)) throw new Error(`${what}: expected an integer, got ${JSON.stringify(v)}`);
  return n;
}

/** The (offset, length) tuples of a SnapshotMetadata stream, with the per-message fields checked constant. */
function tuples(messages: Record<string, unknown>[]): { type: string; capacity: number; extents: [number, number][] } {
  const first = messages[0];
  if (first === undefined) return { type: "", capacity: 0, extents: [] };
  const type = text(first["block_metadata_type"], "block_metadata_type");
  const capacity = int(first["volume_capacity_bytes"], "volume_capacity_bytes");
  const extents: [number, number][] = [];
  for (const m of messages) {
    expect(m["block_metadata_type"]).toBe(type);
    expect(int(m["volume_capacity_bytes"], "volume_capacity_bytes")).toBe(capacity);
    for (const b of list(m["block_metadata"], "block_metadata")) extents.push([int(rec(b, "BlockMetadata")["byte_offset"], "byte_offset"), int(rec(b, "BlockMetadata")["size_bytes"], "size_bytes")]);
  }
  return { type, capacity, extents };
}

function covers(extents: readonly [number, number][], [off, len]: readonly [number, number]): boolean {
  // Tuples are sorted and disjoint, so a covered range is covered by a contiguous run.
  let at = off;
  for (const [o, n] of extents) if (o <= at && o + n > at) at = o + n;
  return at >= off + len;
}

describe("CSI services through a client built from the checked-in csi.proto", () => {
  let fx: GenericArray | undefined;
  let d: ArrayDaemon;
  let def: PackageDefinition;
  let client: Client;
  const md = bearer(TOKEN);
  const call = (service: string, name: string, req: object): Promise<Record<string, unknown>> => unaryCall(client, wire(def, `csi.v1.${service}`, name), req, md);
  const stream = (name: string, req: object): Promise<Record<string, unknown>[]> => streamCall(client, wire(def, "csi.v1.SnapshotMetadata", name), req, md);
  const volumes: Record<string, string> = {};
  const snaps: Record<string, string> = {};

  beforeAll(async () => {
    fx = await startGenericArray("sanbox-interop-csi-100-", TOKEN);
    d = fx.d;
    client = fx.client;
    def = loadSync("csi/v1/csi.proto", { includeDirs: [join(packageRoot(), "proto")], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  }, 60_000);
  afterAll(async () => {
    await fx?.stop();
  });

  it("Identity: a domain-style name, the three service capabilities, and ready", async () => {
    const info = await call("Identity", "GetPluginInfo", {});
    expect(text(info["name"], "name")).toMatch(/^[a-z0-9A-Z]([a-z0-9A-Z.-]{0,61}[a-z0-9A-Z])?$/);
    expect(text(info["vendor_version"], "vendor_version")).not.toBe("");
    const caps = list((await call("Identity", "GetPluginCapabilities", {}))["capabilities"], "capabilities").map((c) => rec(rec(c, "capability")["service"], "service")["type"]);
    expect(caps.sort()).toEqual(["CONTROLLER_SERVICE", "GROUP_CONTROLLER_SERVICE", "SNAPSHOT_METADATA_SERVICE"]);
    const probe = await call("Identity", "Probe", {});
    expect(rec(probe["ready"], "ready")["value"]).toBe(true);
  });

  it("Controller: volumes are idempotent by name and conflicting sizes are ALREADY_EXISTS", async () => {
    const caps = list((await call("Controller", "ControllerGetCapabilities", {}))["capabilities"], "capabilities").map((c) => rec(rec(c, "capability")["rpc"], "rpc")["type"]);
    for (const c of ["CREATE_DELETE_VOLUME", "CREATE_DELETE_SNAPSHOT", "LIST_VOLUMES", "LIST_SNAPSHOTS"]) expect(caps).toContain(c);
    const req = (name: string, bytes: number): object => ({ name, capacity_range: { required_bytes: String(bytes) }, volume_capabilities: [{ block: {}, access_mode: { mode: "SINGLE_NODE_WRITER" } }] });
    for (const name of ["csi-a", "csi-b"]) {
      const v = rec((await call("Controller", "CreateVolume", req(name, SIZE)))["volume"], "volume");
      expect(int(v["capacity_bytes"], "capacity_bytes")).toBe(SIZE);
      volumes[name] = text(v["volume_id"], "volume_id");
    }
    const again = rec((await call("Controller", "CreateVolume", req("csi-a", SIZE)))["volume"], "volume");
    expect(again["volume_id"]).toBe(volumes["csi-a"]);
    expect((await callError(call("Controller", "CreateVolume", req("csi-a", 2 * SIZE)))).code).toBe(status.ALREADY_EXISTS);
    const listed = list((await call("Controller", "ListVolumes", {}))["entries"], "entries").map((e) => rec(rec(e, "entry")["volume"], "volume")["volume_id"]);
    expect(listed).toEqual(expect.arrayContaining(Object.values(volumes)));
  });

  it("SnapshotMetadata: the delta between two snapshots covers exactly the blocks we wrote over NBD, and allocated covers the delta", async () => {
    const snap = async (name: string): Promise<string> => text(rec((await call("Controller", "CreateSnapshot", { source_volume_id: volumes["csi-a"], name }))["snapshot"], "snapshot")["snapshot_id"], "snapshot_id");
    snaps["s0"] = await snap("s0");
    const py = WRITES.map(([off, len]) => `h.pwrite(b"\\x5a" * ${len}, ${off})`).join("; ");
    await tool("nbdsh", ["-u", d.uri("lun/csi-a"), "-c", `${py}; h.flush()`]);
    snaps["s1"] = await snap("s1");
    const delta = tuples(await stream("GetMetadataDelta", { base_snapshot_id: snaps["s0"], target_snapshot_id: snaps["s1"], starting_offset: "0", max_results: 0 }));
    expect(["FIXED_LENGTH", "VARIABLE_LENGTH"]).toContain(delta.type);
    expect(delta.capacity).toBe(SIZE);
    for (const w of WRITES) expect(covers(delta.extents, w), `write at ${w[0]}`).toBe(true);
    // Nothing far from a write: every tuple touches one (the granularity rounds, it does not invent).
    const grain = 1 * MiB;
    for (const [o, n] of delta.extents) expect(WRITES.some(([wo, wl]) => o < wo + wl + grain && wo < o + n + grain), `tuple ${o}+${n}`).toBe(true);
    for (let i = 1; i < delta.extents.length; i++) {
      const [po, pn] = delta.extents[i - 1] ?? [0, 0];
      expect(delta.extents[i]?.[0] ?? 0).toBeGreaterThanOrEqual(po + pn);
    }
    const allocated = tuples(await stream("GetMetadataAllocated", { snapshot_id: snaps["s1"], starting_offset: "0", max_results: 0 }));
    for (const e of delta.extents) expect(covers(allocated.extents, e)).toBe(true);
    // Resume from an offset: the first tuple ends after it.
    const from = 3 * MiB + 200;
    const tail = tuples(await stream("GetMetadataDelta", { base_snapshot_id: snaps["s0"], target_snapshot_id: snaps["s1"], starting_offset: String(from), max_results: 1 }));
    const [o0, n0] = tail.extents[0] ?? [0, 0];
    expect(o0 + n0).toBeGreaterThan(from);
  });

  it("SnapshotMetadata errors are the spec's codes", async () => {
    const args = { base_snapshot_id: snaps["s0"], target_snapshot_id: snaps["s1"] };
    expect((await callError(stream("GetMetadataDelta", { ...args, starting_offset: "-1" }))).code).toBe(status.OUT_OF_RANGE);
    expect((await callError(stream("GetMetadataDelta", { ...args, starting_offset: String(SIZE + 4096) }))).code).toBe(status.OUT_OF_RANGE);
    expect((await callError(stream("GetMetadataDelta", { base_snapshot_id: snaps["s0"], target_snapshot_id: "no-such-snapshot" }))).code).toBe(status.NOT_FOUND);
    expect((await callError(stream("GetMetadataAllocated", { snapshot_id: "" }))).code).toBe(status.INVALID_ARGUMENT);
  });

  it("GroupController: an atomic group snapshot, idempotent by name; delete of a gone group is OK", async () => {
    const ids = [volumes["csi-a"], volumes["csi-b"]];
    const create = async (): Promise<Record<string, unknown>> => rec((await call("GroupController", "CreateVolumeGroupSnapshot", { name: "g1", source_volume_ids: ids }))["group_snapshot"], "group_snapshot");
    const g = await create();
    const gid = text(g["group_snapshot_id"], "group_snapshot_id");
    expect(g["ready_to_use"]).toBe(true);
    expect(g["creation_time"]).toBeTruthy();
    const members = list(g["snapshots"], "snapshots").map((s) => rec(s, "snapshot"));
    expect(members.map((s) => s["source_volume_id"]).sort()).toEqual([...ids].sort());
    for (const s of members) expect(s["group_snapshot_id"]).toBe(gid);
    expect((await create())["group_snapshot_id"]).toBe(gid);
    const got = rec((await call("GroupController", "GetVolumeGroupSnapshot", { group_snapshot_id: gid, snapshot_ids: members.map((s) => s["snapshot_id"]) }))["group_snapshot"], "group_snapshot");
    expect(got["group_snapshot_id"]).toBe(gid);
    const del = { group_snapshot_id: gid, snapshot_ids: members.map((s) => s["snapshot_id"]) };
    await call("GroupController", "DeleteVolumeGroupSnapshot", del);
    await call("GroupController", "DeleteVolumeGroupSnapshot", del);
    expect((await callError(call("GroupController", "GetVolumeGroupSnapshot", del))).code).toBe(status.NOT_FOUND);
  });

  it("limits follow the CSI spec's Size Limits, never echo the secrets, and leave the channel usable", async () => {
    const big = { password: "hunter2-".repeat(600) };
    const e = await callError(call("Controller", "DeleteVolume", { volume_id: volumes["csi-b"], secrets: big }));
    expect(e.code).toBe(status.INVALID_ARGUMENT);
    expect(e.details).toBe("secrets holds 4808 bytes of keys and values; the limit is 4096 bytes");
    expect(e.details).not.toMatch(/hunter2|password/);
    const long = await callError(call("Controller", "CreateSnapshot", { source_volume_id: volumes["csi-a"], name: "n".repeat(129) }));
    expect(long.code).toBe(status.INVALID_ARGUMENT);
    expect(long.details).toBe("name is 129 bytes; the limit is 128 bytes");
    expect((await call("Identity", "Probe", {}))["ready"]).toBeTruthy();
  });

  it("a call without the bearer token is UNAUTHENTICATED", async () => {
    const bare = new Client(d.rpcEndpoint, credentials.createInsecure());
    try {
      const e = await callError(unaryCall(bare, wire(def, "csi.v1.Controller", "ListVolumes"), {}, bearer("wrong-token")));
      expect(e.code).toBe(status.UNAUTHENTICATED);
    } finally {
      bare.close();
    }
  });

  it("snapshots and volumes delete, and a second delete is OK", async () => {
    for (const id of Object.values(snaps)) {
      await call("Controller", "DeleteSnapshot", { snapshot_id: id });
      await call("Controller", "DeleteSnapshot", { snapshot_id: id });
    }
    for (const id of Object.values(volumes)) {
      await call("Controller", "DeleteVolume", { volume_id: id });
      await call("Controller", "DeleteVolume", { volume_id: id });
    }
    expect(list((await call("Controller", "ListVolumes", {}))["entries"], "entries")).toEqual([]);
  });
});
