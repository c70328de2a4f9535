/**
 * A gRPC service described once: its fully qualified proto name, the .proto
 * file that declares it, and a method table with one row per RPC (the proto
 * method name, the protobufjs request and response codecs, whether the response
 * streams). Everything else is derived from that table: the grpc-js service
 * definition here, the server adapter (`serve`, server.ts), the typed client
 * (`connect`, client.ts), and the `Impl` / `Api` / `Reply` types below. A new RPC is one row
 * plus its implementation; a new service (say CSI's Identity or Controller) is
 * one table, not a copy of the plumbing.
 *
 * Invariants, so that stock gRPC tooling in any language sees what the .proto
 * describes (gRPC over HTTP/2, grpc/doc/PROTOCOL-HTTP2.md):
 *  - the path of a method is `/<package>.<Service>/<Method>`, with the names as
 *    the .proto spells them;
 *  - the (de)serializers are the protobufjs codecs generated from that same
 *    .proto: serialize = encode().finish(), deserialize = decode;
 *  - only unary and server-streaming methods exist (no contract here has a
 *    client or bidi stream), so `requestStream` is always false.
 */
import type { MethodDefinition } from "@grpc/grpc-js";
import type { Writer } from "protobufjs";

/** The largest message either side accepts (a page of a list, a CBT stream message). */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** A generated message class: `T` is the decoded message, `I` the plain object encode accepts. */
export interface Codec<T, I> {
  encode(message: I): Writer;
  decode(bytes: Uint8Array): T;
}

export interface MethodSpec<Req, IReq, Res, IRes, S extends boolean> {
  /** The method name as the .proto spells it ("GetLun"). */
  readonly name: string;
  readonly request: Codec<Req, IReq>;
  readonly response: Codec<Res, IRes>;
  /** Server streaming: the response is a stream of messages. */
  readonly stream: S;
}

export function unary<Req, IReq, Res, IRes>(name: string, request: Codec<Req, IReq>, response: Codec<Res, IRes>): MethodSpec<Req, IReq, Res, IRes, false> {
  return { name, request, response, stream: false };
}

export function serverStreaming<Req, IReq, Res, IRes>(name: string, request: Codec<Req, IReq>, response: Codec<Res, IRes>): MethodSpec<Req, IReq, Res, IRes, true> {
  return { name, request, response, stream: true };
}

/** Any row: `never` as the encode input accepts every codec (parameters are contravariant). */
type AnyMethod = MethodSpec<unknown, never, unknown, never, boolean>;
export type MethodTable = Readonly<Record<string, AnyMethod>>;

export interface ServiceDef<M extends MethodTable = MethodTable> {
  /** "sanbox.array.v1.ArrayService". */
  readonly fullName: string;
  /** The declaring file, below proto/ ("sanbox/array/v1/array.proto"): what reflection serves. */
  readonly protoFile: string;
  readonly methods: M;
  /**
   * The grpc-js definition, keyed like the table, `originalName` the proto
   * name. The server registers it and the client takes each method's path and
   * (de)serializers from it, so both sides share one wire description.
   */
  readonly grpc: Readonly<Record<string, MethodDefinition<unknown, unknown>>>;
}

/** A row's codec with its types erased: what grpc-js' untyped (de)serializers need. */
interface WireCodec {
  encode(message: unknown): { finish(): Uint8Array };
  decode(bytes: Uint8Array): unknown;
}

export function defineService<const M extends MethodTable>(fullName: string, methods: M, options: { protoFile: string }): ServiceDef<M> {
  const grpc: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [key, spec] of Object.entries(methods)) {
    // The row's codecs are typed per message; on the wire they take and give unknown.
    const request = spec.request as unknown as WireCodec;
    const response = spec.response as unknown as WireCodec;
    grpc[key] = {
      path: `/${fullName}/${spec.name}`,
      requestStream: false,
      responseStream: spec.stream,
      requestSerialize: (value: unknown) => Buffer.from(request.encode(value).finish()),
      requestDeserialize: (bytes: Buffer) => request.decode(bytes),
      responseSerialize: (value: unknown) => Buffer.from(response.encode(value).finish()),
      responseDeserialize: (bytes: Buffer) => response.decode(bytes),
      originalName: spec.name,
    };
  }
  return { fullName, protoFile: options.protoFile, methods, grpc };
}

/** The method keys of a service ("getLun"). */
export type MethodKey<D extends ServiceDef> = keyof D["methods"] & string;

/** Who is calling, as far as the server knows (after the bearer-token check). */
export interface CallContext {
  readonly peer: string;
  /** Aborted when the client cancels or its deadline passes. */
  readonly signal: AbortSignal;
}

export interface CallOptions {
  signal?: AbortSignal;
  /** Milliseconds until the call is cancelled with TIMEOUT. */
  timeoutMs?: number;
  /** Wait (within the deadline) for a channel that is reconnecting instead of failing with UNAVAILABLE at once. */
  waitForReady?: boolean;
}

/**
 * A decoded message as the client sees it: every scalar and repeated field is
 * present (proto3 defaults), nested messages may be absent. (pbts types nested
 * and repeated message fields with the optional `I…` interfaces; this restores
 * what decode guarantees. `$unknowns`, protobufjs' bag of unknown fields, is left out.)
 */
export type Decoded<T> = { [K in Exclude<keyof T, "$unknowns">]-?: DecodedField<NonNullable<T[K]>> };
type DecodedField<V> = V extends Uint8Array ? Uint8Array : V extends readonly (infer U)[] ? DecodedElem<U>[] : V extends object ? Decoded<V> | undefined : V;
type DecodedElem<U> = U extends Uint8Array ? Uint8Array : U extends object ? Decoded<U> : U;

/**
 * The server side of one row: the decoded request (every field present with its
 * proto3 default) in, a response object out, or an async iterable of them for
 * a streaming method. Throw SanboxErrors; status.ts maps them.
 */
type Handler<S> =
  S extends MethodSpec<infer Req, infer _IReq, infer _Res, infer IRes, infer Streams>
    ? Streams extends true
      ? (req: Req, ctx: CallContext) => AsyncIterable<IRes>
      : (req: Req, ctx: CallContext) => Promise<IRes>
    : never;

/** The client side of one row: a plain request object in, decoded messages out. */
type Caller<S> =
  S extends MethodSpec<infer _Req, infer IReq, infer _Res, infer IRes, infer Streams>
    ? Streams extends true
      ? (req: IReq, opts?: CallOptions) => AsyncIterable<Decoded<IRes>>
      : (req: IReq, opts?: CallOptions) => Promise<Decoded<IRes>>
    : never;

/** What an implementation of service `D` provides. */
export type Impl<D extends ServiceDef> = { [K in keyof D["methods"]]: Handler<D["methods"][K]> };

/** What a client of service `D` offers. */
export type Api<D extends ServiceDef> = { [K in keyof D["methods"]]: Caller<D["methods"][K]> };

/** Response type of a client method, e.g. `Reply<typeof ARRAY_SERVICE, "getLun">`. */
export type Reply<D extends ServiceDef, K extends MethodKey<D>> = D["methods"][K] extends MethodSpec<infer _Req, infer _IReq, infer _Res, infer IRes, infer _S> ? Decoded<IRes> : never;
