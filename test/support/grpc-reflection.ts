/**
 * A gRPC server-reflection client built only from the reflection .proto that
 * @grpc/reflection ships (no sanbox code), so a test sees what grpcurl or any
 * stock tool sees: list the services, fetch the FileDescriptorProtos that
 * define a symbol, and build a protobufjs Root from them alone.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Client, credentials } from "@grpc/grpc-js";
import { loadSync, type MethodDefinition } from "@grpc/proto-loader";
import protobuf from "protobufjs";
import descriptor from "protobufjs/ext/descriptor.js";
import { expect } from "vitest";

export function rec(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`${what}: expected an object, got ${JSON.stringify(v)}`);
  return v as Record<string, unknown>;
}
export function list(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new Error(`${what}: expected a list, got ${JSON.stringify(v)}`);
  return v as unknown[];
}
export function text(v: unknown, what: string): string {
  if (typeof v !== "string") throw new Error(`${what}: expected a string, got ${JSON.stringify(v)}`);
  return v;
}

export type Version = "v1" | "v1alpha";

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
export async function reflect(endpoint: string, version: Version, requests: readonly object[]): Promise<Record<string, unknown>[]> {
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

export async function listServices(endpoint: string, version: Version = "v1"): Promise<string[]> {
  const [res] = await reflect(endpoint, version, [{ listServices: "*" }]);
  expect(res?.["messageResponse"]).toBe("listServicesResponse");
  const services = list(rec(res?.["listServicesResponse"], "listServicesResponse")["service"], "service");
  return services.map((s) => text(rec(s, "ServiceResponse")["name"], "name"));
}

/** Decodes every FileDescriptorProto of a file_descriptor_response. */
export function fileDescriptors(res: Record<string, unknown> | undefined): Record<string, unknown>[] {
  expect(res?.["messageResponse"]).toBe("fileDescriptorResponse");
  const files = list(rec(res?.["fileDescriptorResponse"], "fileDescriptorResponse")["fileDescriptorProto"], "fileDescriptorProto");
  return files.map((b) => {
    if (!(b instanceof Uint8Array)) throw new Error(`fileDescriptorProto: expected bytes, got ${typeof b}`);
    const fd = descriptor.FileDescriptorProto;
    return rec(fd.toObject(fd.decode(b)), "FileDescriptorProto");
  });
}

export function named(items: unknown, what: string, name: string): Record<string, unknown> {
  const found = list(items, what)
    .map((x) => rec(x, what))
    .find((x) => x["name"] === name);
  if (found === undefined) throw new Error(`${what}: no ${name}`);
  return found;
}

/** The raw FileDescriptorProto bytes of a file_descriptor_response. */
export function descriptorBytes(res: Record<string, unknown> | undefined): Uint8Array[] {
  expect(res?.["messageResponse"]).toBe("fileDescriptorResponse");
  return list(rec(res?.["fileDescriptorResponse"], "fileDescriptorResponse")["fileDescriptorProto"], "fileDescriptorProto").map((b) => {
    if (!(b instanceof Uint8Array)) throw new Error(`fileDescriptorProto: expected bytes, got ${typeof b}`);
    return b;
  });
}

/**
 * A protobufjs Root built from what reflection returns for `symbols` and
 * nothing else: the files that define them and the files those import, as the
 * server sends them (fetched by name until none is missing).
 */
export async function rootFromReflection(endpoint: string, symbols: readonly string[]): Promise<protobuf.Root> {
  const byName = new Map<string, Uint8Array>();
  const responses = await reflect(endpoint, "v1", symbols.map((s) => ({ fileContainingSymbol: s })));
  for (const res of responses) for (const b of descriptorBytes(res)) byName.set(fileName(b), b);
  for (let round = 0; round < 8; round++) {
    const missing = [...new Set([...byName.values()].flatMap((b) => dependencies(b)))].filter((d) => !byName.has(d));
    if (missing.length === 0) break;
    const more = await reflect(endpoint, "v1", missing.map((f) => ({ fileByFilename: f })));
    for (const res of more) for (const b of descriptorBytes(res)) byName.set(fileName(b), b);
  }
  const set = descriptor.FileDescriptorSet.create({ file: [...byName.values()].map((b) => descriptor.FileDescriptorProto.decode(b)) });
  const root = protobuf.Root.fromDescriptor(descriptor.FileDescriptorSet.encode(set).finish());
  root.resolveAll();
  return root;
}

function fileName(b: Uint8Array): string {
  return text(rec(descriptor.FileDescriptorProto.toObject(descriptor.FileDescriptorProto.decode(b)), "FileDescriptorProto")["name"], "name");
}
function dependencies(b: Uint8Array): string[] {
  const deps = rec(descriptor.FileDescriptorProto.toObject(descriptor.FileDescriptorProto.decode(b)), "FileDescriptorProto")["dependency"];
  return deps === undefined ? [] : list(deps, "dependency").map((d) => text(d, "dependency"));
}
