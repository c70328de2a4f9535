/**
 * gRPC server reflection (issue 4, docs/contract.md "Server reflection"): the
 * array and the hypervisor daemon answer the standard ServerReflectionInfo
 * stream, v1 and v1alpha, the way grpcurl calls it. The client here is built
 * from the reflection .proto that @grpc/reflection ships, not from sanbox code,
 * so it sees what any stock tool sees.
 */
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Client, credentials, status } from "@grpc/grpc-js";
import { loadSync, type MethodDefinition } from "@grpc/proto-loader";
import descriptor from "protobufjs/ext/descriptor.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectArray } from "../../src/rpc/array-client.js";
import { METHODS } from "../../src/rpc/array-service-def.js";
import { HYPERVISOR_METHODS } from "../../src/rpc/hypervisor-service-def.js";
import { startArrayDaemon, startArrayFixture, type ArrayFixture } from "../support/array-daemon.js";
import { startHypervisor, type HypervisorDaemon } from "../support/hypervisor-daemon.js";

const ARRAY_SERVICE = "sanbox.array.v1.ArrayService";
const HYPERVISOR_SERVICE = "sanbox.hypervisor.v1.HypervisorService";

type Version = "v1" | "v1alpha";

function rec(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`${what}: expected an object, got ${JSON.stringify(v)}`);
  return v as Record<string, unknown>;
}
function list(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new Error(`${what}: expected a list, got ${JSON.stringify(v)}`);
  return v as unknown[];
}
function text(v: unknown, what: string): string {
  if (typeof v !== "string") throw new Error(`${what}: expected a string, got ${JSON.stringify(v)}`);
  return v;
}

/** ServerReflectionInfo of one protocol version, from the .proto inside @grpc/reflection. */
function reflectionMethod(version: Version): MethodDefinition<object, object> {
  const pkgDir = dirname(createRequire(import.meta.url).resolve("@grpc/reflection/package.json"));
  const def = loadSync(`grpc/reflection/${version}/reflection.proto`, { includeDirs: [join(pkgDir, "build", "proto")], oneofs: true });
  const service = def[`grpc.reflection.${version}.ServerReflection`];
  if (service === undefined || "format" in service) throw new Error(`no ServerReflection service in the ${version} reflection.proto`);
  const method = service["ServerReflectionInfo"];
  if (method === undefined || !method.requestStream || !method.responseStream) throw new Error(`ServerReflectionInfo (${version}) is not a bidi stream`);
  return method;
}

/** Sends `requests` on one ServerReflectionInfo stream, half-closes, returns the responses in order. */
async function reflect(endpoint: string, version: Version, requests: readonly object[]): Promise<Record<string, unknown>[]> {
  const method = reflectionMethod(version);
  const client = new Client(endpoint, credentials.createInsecure());
  try {
    const call = client.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize);
    const responses: Record<string, unknown>[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on("data", (m: unknown) => responses.push(rec(m, "ServerReflectionResponse")));
      call.on("error", reject);
      call.on("end", () => resolve());
    });
    for (const r of requests) call.write(r);
    call.end();
    await done;
    expect(responses).toHaveLength(requests.length);
    return responses;
  } finally {
    client.close();
  }
}

async function listServices(endpoint: string, version: Version = "v1"): Promise<string[]> {
  const [res] = await reflect(endpoint, version, [{ listServices: "*" }]);
  expect(res?.["messageResponse"]).toBe("listServicesResponse");
  const services = list(rec(res?.["listServicesResponse"], "listServicesResponse")["service"], "service");
  return services.map((s) => text(rec(s, "ServiceResponse")["name"], "name"));
}

/** Decodes every FileDescriptorProto of a file_descriptor_response. */
function fileDescriptors(res: Record<string, unknown> | undefined): Record<string, unknown>[] {
  expect(res?.["messageResponse"]).toBe("fileDescriptorResponse");
  const files = list(rec(res?.["fileDescriptorResponse"], "fileDescriptorResponse")["fileDescriptorProto"], "fileDescriptorProto");
  return files.map((b) => {
    if (!(b instanceof Uint8Array)) throw new Error(`fileDescriptorProto: expected bytes, got ${typeof b}`);
    const fd = descriptor.FileDescriptorProto;
    return rec(fd.toObject(fd.decode(b)), "FileDescriptorProto");
  });
}

function named(items: unknown, what: string, name: string): Record<string, unknown> {
  const found = list(items, what)
    .map((x) => rec(x, what))
    .find((x) => x["name"] === name);
  if (found === undefined) throw new Error(`${what}: no ${name}`);
  return found;
}

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
