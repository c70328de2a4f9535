/**
 * gRPC server reflection (issue 4, docs/contract.md "Server reflection"): the
 * array and the hypervisor daemon answer the standard ServerReflectionInfo
 * stream, v1 and v1alpha, the way grpcurl calls it. The client here is built
 * from the reflection .proto that @grpc/reflection ships, not from sanbox code,
 * so it sees what any stock tool sees.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectArray } from "../../src/rpc/array-client.js";
import { METHODS } from "../../src/rpc/array-service-def.js";
import { CSI_CONTROLLER, CSI_GROUP_CONTROLLER, CSI_IDENTITY, CSI_SNAPSHOT_METADATA } from "../../src/rpc/csi-service-defs.js";
import { HYPERVISOR_METHODS } from "../../src/rpc/hypervisor-service-def.js";
import { startArrayDaemon, startArrayFixture, type ArrayFixture } from "../support/array-daemon.js";
import { fileDescriptors, list, listServices, named, rec, reflect } from "../support/grpc-reflection.js";
import { startHypervisor, type HypervisorDaemon } from "../support/hypervisor-daemon.js";

const ARRAY_SERVICE = "sanbox.array.v1.ArrayService";
const HYPERVISOR_SERVICE = "sanbox.hypervisor.v1.HypervisorService";

describe("gRPC server reflection", () => {
  let fx: ArrayFixture | undefined;
  let hv: HypervisorDaemon | undefined;
  let arrayEp = "";

  beforeAll(async () => {
    fx = await startArrayFixture("sanbox-e2e-470-");
    arrayEp = fx.d.rpcEndpoint;
    hv = await startHypervisor(join(fx.tmp.dir, "hv"), arrayEp);
  });
  afterAll(async () => {
    await hv?.stop();
    await fx?.stop();
  });

  it("the array lists ArrayService, over v1 and v1alpha", async () => {
    expect(await listServices(arrayEp, "v1")).toContain(ARRAY_SERVICE);
    expect(await listServices(arrayEp, "v1alpha")).toContain(ARRAY_SERVICE);
  });

  it("the array lists the four CSI services, and describes each exactly as it serves them", async () => {
    const listed = await listServices(arrayEp);
    for (const def of [CSI_IDENTITY, CSI_CONTROLLER, CSI_GROUP_CONTROLLER, CSI_SNAPSHOT_METADATA]) {
      expect(listed).toContain(def.fullName);
      const [res] = await reflect(arrayEp, "v1", [{ fileContainingSymbol: def.fullName }]);
      const file = fileDescriptors(res).find((f) => f["package"] === "csi.v1");
      if (file === undefined) throw new Error(`no csi.v1 file for ${def.fullName}`);
      const service = named(file["service"], "service", def.fullName.slice("csi.v1.".length));
      const served: readonly { name: string; stream: boolean }[] = Object.values<{ name: string; stream: boolean }>(def.methods);
      expect(list(service["method"], "method").map((m) => rec(m, "method")["name"]).sort()).toEqual(served.map((m) => m.name).sort());
      for (const spec of served) expect(named(service["method"], "method", spec.name)["serverStreaming"] === true, spec.name).toBe(spec.stream);
    }
  });

  it("file_containing_symbol describes ArrayService exactly as the METHODS table serves it", async () => {
    const [res] = await reflect(arrayEp, "v1", [{ fileContainingSymbol: ARRAY_SERVICE }]);
    const files = fileDescriptors(res);
    const file = files.find((f) => f["package"] === "sanbox.array.v1");
    if (file === undefined) throw new Error(`no sanbox.array.v1 file among ${files.length}`);
    const service = named(file["service"], "service", "ArrayService");
    const methods = list(service["method"], "method").map((m) => rec(m, "method"));
    const served = Object.values(METHODS);
    expect(methods.map((m) => m["name"]).sort()).toEqual(served.map((m) => m.name).sort());
    for (const spec of served) {
      const m = named(service["method"], "method", spec.name);
      expect({ name: spec.name, streams: m["serverStreaming"] === true }).toEqual({ name: spec.name, streams: spec.stream });
    }
    // Field names as the contract spells them (not protobufjs camelCase), so a
    // tool's `describe` output matches docs/contract.md.
    const lun = named(file["messageType"], "messageType", "Lun");
    expect(list(lun["field"], "field").map((f) => rec(f, "field")["name"])).toContain("lun_id");
  });

  it("an unknown symbol gets error_response NOT_FOUND, and the stream goes on", async () => {
    const [missing, after] = await reflect(arrayEp, "v1", [{ fileContainingSymbol: "sanbox.array.v1.NoSuchService" }, { listServices: "*" }]);
    expect(missing?.["messageResponse"]).toBe("errorResponse");
    expect(rec(missing?.["errorResponse"], "errorResponse")["errorCode"]).toBe(status.NOT_FOUND);
    expect(after?.["messageResponse"]).toBe("listServicesResponse");
  });

  it("needs no bearer token where ArrayService does", async () => {
    if (fx === undefined) throw new Error("no fixture");
    const tokenFile = join(fx.tmp.dir, "token");
    writeFileSync(tokenFile, "reflection-test-token\n", { mode: 0o600 });
    const d2 = await startArrayDaemon(join(fx.tmp.dir, "array-token"), ["--token-file", tokenFile]);
    try {
      const none = connectArray({ endpoint: d2.rpcEndpoint });
      await expect(none.getArrayInfo({})).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
      none.close();
      expect(await listServices(d2.rpcEndpoint)).toContain(ARRAY_SERVICE);
    } finally {
      await d2.stop();
    }
  });

  it("the hypervisor lists HypervisorService and describes its methods", async () => {
    if (hv === undefined) throw new Error("no hypervisor");
    expect(await listServices(hv.endpoint)).toContain(HYPERVISOR_SERVICE);
    const [res] = await reflect(hv.endpoint, "v1", [{ fileContainingSymbol: HYPERVISOR_SERVICE }]);
    const file = fileDescriptors(res).find((f) => f["package"] === "sanbox.hypervisor.v1");
    const service = named(file?.["service"], "service", "HypervisorService");
    const names = list(service["method"], "method").map((m) => rec(m, "method")["name"]);
    expect(names.sort()).toEqual(Object.values(HYPERVISOR_METHODS).map((m) => m.name).sort());
  });
});
