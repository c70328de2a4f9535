/**
 * The grpc-js ServiceDefinition for ArrayService, built from the method table
 * with the protobufjs codecs as (de)serializers: serialize = encode().finish(),
 * deserialize = decode. Stock gRPC tooling in any language sees the same wire
 * format as the .proto describes.
 */
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import { METHODS, type MethodName } from "./methods.js";
import { SERVICE_NAME } from "./proto.js";

export type ArrayServiceDefinition = ServiceDefinition & Record<MethodName, MethodDefinition<unknown, unknown>>;

function definition(): ArrayServiceDefinition {
  const def: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [key, m] of Object.entries(METHODS)) {
    const request = m.request as { encode(x: unknown): { finish(): Uint8Array }; decode(b: Uint8Array): unknown };
    const response = m.response as { encode(x: unknown): { finish(): Uint8Array }; decode(b: Uint8Array): unknown };
    def[key] = {
      path: `/${SERVICE_NAME}/${m.name}`,
      requestStream: false,
      responseStream: m.stream,
      requestSerialize: (v: unknown) => Buffer.from(request.encode(v).finish()),
      requestDeserialize: (b: Buffer) => request.decode(b),
      responseSerialize: (v: unknown) => Buffer.from(response.encode(v).finish()),
      responseDeserialize: (b: Buffer) => response.decode(b),
      originalName: m.name,
    };
  }
  return def as ArrayServiceDefinition;
}

export const ARRAY_SERVICE: ArrayServiceDefinition = definition();
