/**
 * gRPC server reflection (issue 4): both daemons also serve the standard
 * `grpc.reflection.v1.ServerReflection` and its predecessor
 * `grpc.reflection.v1alpha.ServerReflection`, so stock tools (grpcurl, Postman,
 * grpcui) can list the services and describe every message without a copy of
 * the .proto. The schema served is the checked-in contract itself,
 * proto/sanbox/array/v1/array.proto or proto/sanbox/hypervisor/v1/hypervisor.proto,
 * read at start-up (every file of the services one server serves, server.ts);
 * the codecs in ./generated come from the same files, so the two cannot drift
 * apart short of a stale build.
 *
 * Reflection needs no bearer token: the reflection service is added next to the
 * service, not through the per-method handlers that call BearerAuth, and it only
 * reveals the public schema (also published in proto/), never data or state.
 * Transport protection (Unix socket permissions, TLS on TCP) still applies.
 *
 * proto-loader renames each file after its package (`sanbox_array_v1.proto`)
 * when it builds descriptors, so fetch files by symbol, not by their path in
 * proto/.
 */
import { join } from "node:path";
import type { Server } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { packageRoot } from "../package-root.js";

/** One parse per set of .proto files and process: the in-process test servers call serve many times. */
const cache = new Map<string, ReflectionService>();

/**
 * Registers ServerReflection (v1 and v1alpha) on `server`, describing
 * `protoFiles`, paths below proto/ such as "sanbox/array/v1/array.proto".
 * A server has one reflection service, so a server of several services passes
 * all their files at once. Call it before `bindAsync`, like `addService`.
 */
export function addReflection(server: Server, protoFiles: readonly string[]): void {
  const key = [...protoFiles].sort().join("\n");
  let service = cache.get(key);
  if (service === undefined) {
    // keepCase: descriptors built from camelCased fields would show tools
    // `lunId` where the contract says `lun_id`. Other loader options only shape
    // decoded objects, which reflection never produces.
    const definition = loadSync([...protoFiles], { includeDirs: [join(packageRoot(), "proto")], keepCase: true });
    service = new ReflectionService(definition);
    cache.set(key, service);
  }
  service.addToServer(server);
}
