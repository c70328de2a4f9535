/**
 * The array's CSI services driven by a client that knows nothing but the
 * endpoint: it learns the services from gRPC server reflection, builds its
 * message types from the FileDescriptorProtos the server returns
 * (protobufjs, no .proto file, no sanbox code), and makes the calls a CO
 * makes for a CBT backup: create a volume, snapshot it, stream its allocated
 * blocks, take a group snapshot.
 */
import { type Client, status } from "@grpc/grpc-js";
import type protobuf from "protobufjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ArrayDaemon } from "../../support/array-daemon.js";
import { bearer, callError, startGenericArray, streamCall, unaryCall, type GenericArray, type WireMethod } from "../../support/grpc-generic.js";
import { list, listServices, rec, rootFromReflection, text } from "../../support/grpc-reflection.js";
import { tool } from "../../support/tools.js";

const TOKEN = "csi-reflection-token-0123456789";
const MiB = 1024 * 1024;
const CSI = ["csi.v1.Identity", "csi.v1.Controller", "csi.v1.GroupController", "csi.v1.SnapshotMetadata"];

/** A method's path and codecs, from the reflected descriptors alone. */
function wire(root: protobuf.Root, service: string, name: string): WireMethod {
  const m = root.lookupService(service).methods[name];
  if (m === undefined) throw new Error(`reflection describes no ${service}.${name}`);
  const req = root.lookupType(m.requestType);
  const res = root.lookupType(m.responseType);
  return {
    path: `/${service}/${name}`,
    serialize: (o) => Buffer.from(req.encode(req.fromObject(o)).finish()),
    deserialize: (b) => res.toObject(res.decode(b), { longs: String, enums: String, defaults: true }),
  };
}

describe("CSI services through a client built from server reflection alone", () => {
  let fx: GenericArray | undefined;
  let d: ArrayDaemon;
  let root: protobuf.Root;
  let client: Client;
  const md = bearer(TOKEN);
  const call = (service: string, name: string, req: object): Promise<Record<string, unknown>> => unaryCall(client, wire(root, `csi.v1.${service}`, name), req, md);

  beforeAll(async () => {
    fx = await startGenericArray("sanbox-interop-csi-110-", TOKEN);
    d = fx.d;
    client = fx.client;
  }, 60_000);
  afterAll(async () => {
    await fx?.stop();
  });

  it("reflection lists the CSI services and describes them completely enough to build every request and reply", async () => {
    const services = await listServices(d.rpcEndpoint);
    for (const s of CSI) expect(services).toContain(s);
    root = await rootFromReflection(d.rpcEndpoint, CSI);
    for (const s of CSI) {
      const svc = root.lookupService(s);
      expect(Object.keys(svc.methods).length).toBeGreaterThan(0);
      // Every request and reply type resolves, imports (Timestamp, BoolValue) included.
      for (const m of Object.values(svc.methods)) {
        for (const t of [m.requestType, m.responseType]) for (const f of root.lookupType(t).fieldsArray) expect(() => f.resolve(), `${t}.${f.name}`).not.toThrow();
      }
    }
    expect(root.lookupService("csi.v1.SnapshotMetadata").methods["GetMetadataAllocated"]?.responseStream).toBe(true);
  });

  it("a CBT round: volume, data over NBD, snapshot, allocated-blocks stream, group snapshot", async () => {
    const info = await call("Identity", "GetPluginInfo", {});
    expect(text(info["name"], "name")).not.toBe("");
    const v = rec((await call("Controller", "CreateVolume", { name: "refl", capacity_range: { required_bytes: 8 * MiB }, volume_capabilities: [{ block: {}, access_mode: { mode: 1 } }] }))["volume"], "volume");
    const volumeId = text(v["volume_id"], "volume_id");
    expect(v["capacity_bytes"]).toBe(String(8 * MiB));
    await tool("nbdsh", ["-u", d.uri("lun/refl"), "-c", `h.pwrite(b"\\x11" * 65536, ${2 * MiB}); h.flush()`]);
    const s = rec((await call("Controller", "CreateSnapshot", { source_volume_id: volumeId, name: "refl-s1" }))["snapshot"], "snapshot");
    expect(s["ready_to_use"]).toBe(true);
    const snapshotId = text(s["snapshot_id"], "snapshot_id");
    const messages = await streamCall(client, wire(root, "csi.v1.SnapshotMetadata", "GetMetadataAllocated"), { snapshot_id: snapshotId }, md);
    const extents = messages.flatMap((m) => list(m["block_metadata"], "block_metadata").map((b) => [Number(rec(b, "b")["byte_offset"]), Number(rec(b, "b")["size_bytes"])] as const));
    expect(extents.length).toBeGreaterThan(0);
    for (const m of messages) expect(m["volume_capacity_bytes"]).toBe(String(8 * MiB));
    // The one write is allocated; nothing outside its CBT granule is.
    expect(extents.some(([o, n]) => o <= 2 * MiB && o + n >= 2 * MiB + 65536)).toBe(true);
    for (const [o, n] of extents) expect(o + n > 2 * MiB - MiB && o < 2 * MiB + 65536 + MiB, `extent ${o}+${n}`).toBe(true);
    const other = rec((await call("Controller", "CreateVolume", { name: "refl-2", volume_capabilities: [{ block: {}, access_mode: { mode: 1 } }] }))["volume"], "volume");
    const g = rec((await call("GroupController", "CreateVolumeGroupSnapshot", { name: "refl-g", source_volume_ids: [volumeId, text(other["volume_id"], "volume_id")] }))["group_snapshot"], "group_snapshot");
    expect(list(g["snapshots"], "snapshots")).toHaveLength(2);
    const missing = await callError(streamCall(client, wire(root, "csi.v1.SnapshotMetadata", "GetMetadataAllocated"), { snapshot_id: "no-such" }, md));
    expect(missing.code).toBe(status.NOT_FOUND);
  });
});
