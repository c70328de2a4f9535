/**
 * HypervisorService over grpc-js: the method table, the service definition, a
 * server adapter and a typed client. All calls are unary. The bearer-token
 * check, endpoint syntax and the error <-> status mapping are the array's
 * (auth.ts, endpoint.ts, status.ts), so a client branches on the same
 * `SanboxError.code` whichever daemon it called.
 */
import { mkdirSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import {
  Client,
  Metadata,
  Server,
  ServerCredentials,
  credentials,
  type MethodDefinition,
  type ServerUnaryCall,
  type ServiceDefinition,
  type ServiceError,
  type UntypedServiceImplementation,
  type sendUnaryData,
} from "@grpc/grpc-js";
import { CancelledError, InvalidArgumentError } from "../errors.js";
import { createLogger, type Logger } from "../log.js";
import { AUTHORIZATION, BearerAuth } from "./auth.js";
import { formatEndpoint, grpcAddress, parseEndpoint, type RpcEndpoint } from "./endpoint.js";
import { HYPERVISOR_SERVICE_NAME, hv1 } from "./hypervisor-proto.js";
import type { CallContext, CallOptions, Codec, Decoded } from "./methods.js";
import { addReflection } from "./reflection.js";
import { errorFromStatus, isServiceError, toStatus } from "./status.js";

interface Unary<Req, IReq, Res, IRes> {
  readonly name: string;
  readonly request: Codec<Req, IReq>;
  readonly response: Codec<Res, IRes>;
}
function unary<Req, IReq, Res, IRes>(name: string, request: Codec<Req, IReq>, response: Codec<Res, IRes>): Unary<Req, IReq, Res, IRes> {
  return { name, request, response };
}

export const HYPERVISOR_METHODS = {
  listVms: unary("ListVms", hv1.ListVmsRequest, hv1.ListVmsResponse),
  getVm: unary("GetVm", hv1.GetVmRequest, hv1.Vm),
  createVm: unary("CreateVm", hv1.CreateVmRequest, hv1.Vm),
  deleteVm: unary("DeleteVm", hv1.DeleteVmRequest, hv1.DeleteVmResponse),
  startWorkload: unary("StartWorkload", hv1.StartWorkloadRequest, hv1.WorkloadStatus),
  stopWorkload: unary("StopWorkload", hv1.StopWorkloadRequest, hv1.WorkloadStatus),
  getWorkloadStatus: unary("GetWorkloadStatus", hv1.GetWorkloadStatusRequest, hv1.WorkloadStatus),
  quiesceVm: unary("QuiesceVm", hv1.QuiesceVmRequest, hv1.WorkloadStatus),
  resumeVm: unary("ResumeVm", hv1.ResumeVmRequest, hv1.WorkloadStatus),
} as const;

type Methods = typeof HYPERVISOR_METHODS;
export type HypervisorMethodName = keyof Methods;

/** What the simulator implements: decoded request in, response object out; throw SanboxErrors. */
export type HypervisorServiceImpl = {
  [K in HypervisorMethodName]: Methods[K] extends Unary<infer Req, infer _IReq, infer _Res, infer IRes> ? (req: Req, ctx: CallContext) => Promise<IRes> : never;
};

/** What a client offers: plain request objects in, decoded messages out. */
export type HypervisorApi = {
  [K in HypervisorMethodName]: Methods[K] extends Unary<infer _Req, infer IReq, infer _Res, infer IRes> ? (req: IReq, opts?: CallOptions) => Promise<Decoded<IRes>> : never;
};

interface AnyCodec {
  encode(x: unknown): { finish(): Uint8Array };
  decode(b: Uint8Array): unknown;
}

function definition(): ServiceDefinition {
  const def: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [key, m] of Object.entries(HYPERVISOR_METHODS)) {
    const request = m.request as unknown as AnyCodec;
    const response = m.response as unknown as AnyCodec;
    def[key] = {
      path: `/${HYPERVISOR_SERVICE_NAME}/${m.name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: (v: unknown) => Buffer.from(request.encode(v).finish()),
      requestDeserialize: (b: Buffer) => request.decode(b),
      responseSerialize: (v: unknown) => Buffer.from(response.encode(v).finish()),
      responseDeserialize: (b: Buffer) => response.decode(b),
      originalName: m.name,
    };
  }
  return def;
}

export const HYPERVISOR_SERVICE: ServiceDefinition = definition();

export interface HypervisorServerOptions {
  endpoint: RpcEndpoint;
  token?: string;
  /** Allow plaintext TCP (the hypervisor serves no TLS of its own). */
  insecure?: boolean;
  log?: Logger;
}

export interface RunningHypervisorServer {
  readonly endpoint: RpcEndpoint;
  close(): Promise<void>;
}

type UnaryFn = (req: unknown, ctx: CallContext) => Promise<unknown>;

export async function serveHypervisor(impl: HypervisorServiceImpl, opts: HypervisorServerOptions): Promise<RunningHypervisorServer> {
  const log = opts.log ?? createLogger("hypervisor/rpc");
  if (opts.endpoint.kind === "tcp" && opts.insecure !== true) throw new InvalidArgumentError("the hypervisor serves gRPC over TCP only with --insecure (use a unix: endpoint)");
  const auth = new BearerAuth(opts.token);
  const server = new Server();
  const handlers: UntypedServiceImplementation = {};
  const table = impl as unknown as Record<HypervisorMethodName, UnaryFn>;
  for (const key of Object.keys(HYPERVISOR_METHODS) as HypervisorMethodName[]) {
    const name = HYPERVISOR_METHODS[key].name;
    const fn = table[key].bind(impl);
    handlers[key] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>): void => {
      const abort = new AbortController();
      call.on("cancelled", () => abort.abort());
      const run = async (): Promise<unknown> => {
        auth.check(call.metadata);
        return fn(call.request, { peer: call.getPeer(), signal: abort.signal });
      };
      run().then(
        (res) => callback(null, res),
        (e: unknown) => {
          const s = toStatus(e);
          log.debug(`${name}: ${s.code} ${s.details ?? ""}`);
          callback(s);
        },
      );
    };
  }
  server.addService(HYPERVISOR_SERVICE, handlers);
  addReflection(server, "sanbox/hypervisor/v1/hypervisor.proto"); // schema only, no token (reflection.ts)
  if (opts.endpoint.kind === "unix") {
    mkdirSync(dirname(opts.endpoint.path), { recursive: true });
    rmSync(opts.endpoint.path, { force: true });
  }
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(grpcAddress(opts.endpoint), ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p)));
  });
  const endpoint: RpcEndpoint = opts.endpoint.kind === "tcp" ? { ...opts.endpoint, port } : opts.endpoint;
  log.debug(`gRPC HypervisorService on ${formatEndpoint(endpoint)}`);
  return {
    endpoint,
    close: () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.forceShutdown(), 10_000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          if (endpoint.kind === "unix") rmSync(endpoint.path, { force: true });
          resolve();
        });
      }),
  };
}

export interface HypervisorClient extends HypervisorApi {
  readonly endpoint: RpcEndpoint;
  close(): void;
}

/** Connects lazily (the first call opens the channel). */
export function connectHypervisor(opts: { endpoint: string | RpcEndpoint; token?: string }): HypervisorClient {
  const endpoint = typeof opts.endpoint === "string" ? parseEndpoint(opts.endpoint) : opts.endpoint;
  const client = new Client(grpcAddress(endpoint), credentials.createInsecure());
  const call = (key: HypervisorMethodName, req: unknown, o: CallOptions | undefined): Promise<unknown> => {
    const spec = HYPERVISOR_METHODS[key];
    const request = spec.request as unknown as AnyCodec;
    const response = spec.response as unknown as AnyCodec;
    if (o?.signal?.aborted === true) return Promise.reject(new CancelledError());
    const md = new Metadata();
    if (opts.token !== undefined) md.set(AUTHORIZATION, `Bearer ${opts.token}`);
    return new Promise((resolve, reject) => {
      const c = client.makeUnaryRequest(
        `/${HYPERVISOR_SERVICE_NAME}/${spec.name}`,
        (v: unknown) => Buffer.from(request.encode(v).finish()),
        (b: Buffer) => response.decode(b),
        req,
        md,
        o?.timeoutMs !== undefined ? { deadline: Date.now() + o.timeoutMs } : {},
        (err: ServiceError | null, value?: unknown) => {
          o?.signal?.removeEventListener("abort", onAbort);
          if (err) reject(isServiceError(err) ? errorFromStatus(err.code, err.details, err.metadata) : err);
          else resolve(value);
        },
      );
      const onAbort = (): void => c.cancel();
      o?.signal?.addEventListener("abort", onAbort, { once: true });
    });
  };
  const api: Record<string, unknown> = { endpoint, close: () => client.close() };
  for (const key of Object.keys(HYPERVISOR_METHODS) as HypervisorMethodName[]) api[key] = (req: unknown, o?: CallOptions) => call(key, req, o);
  return api as unknown as HypervisorClient;
}
