/**
 * One grpc-js server for one or more services (serve), each given as a
 * (definition, implementation) pair made with `implement`. The array serves
 * ArrayService alone, the hypervisor HypervisorService; a CSI driver would
 * serve Identity, Controller, GroupController and SnapshotMetadata on one
 * socket, as CSI requires of a plugin endpoint.
 *
 * Every method handler, whatever the service:
 *  - checks the bearer token first (auth.ts), so an unauthenticated call runs
 *    no implementation code, then the field limits (limits.ts); a request
 *    past RECEIVE_LIMIT_BYTES is refused by grpc-js (RESOURCE_EXHAUSTED);
 *  - maps a thrown error through status.ts (SanboxError -> gRPC code plus the
 *    `sanbox-reason` trailer; anything else INTERNAL);
 *  - for streams, respects backpressure (awaits 'drain') and stops when the
 *    client cancels; `ctx.signal` tells the implementation the same.
 * Server reflection of the services' .proto files rides along, unauthenticated
 * (reflection.ts): it reveals the public schema, never data.
 *
 * Transport security: a Unix socket is local (file permissions guard it). TCP
 * needs TLS (a certificate and key) plus a bearer token, unless the caller
 * passes `insecure` (plaintext, token optional).
 */
import { once } from "node:events";
import { mkdirSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import {
  Server,
  ServerCredentials,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { InvalidArgumentError } from "../errors.js";
import { createLogger, type Logger } from "../log.js";
import { BearerAuth } from "./auth.js";
import { formatEndpoint, grpcAddress, type RpcEndpoint } from "./endpoint.js";
import { addReflection } from "./reflection.js";
import { checkRequestLimits, RECEIVE_LIMIT_BYTES } from "./limits.js";
import type { CallContext, Impl, ServiceDef } from "./service.js";
import { toStatus } from "./status.js";

export interface RpcServerOptions {
  endpoint: RpcEndpoint;
  token?: string;
  /** PEM certificate chain and private key: serve TLS (TCP only). */
  tls?: { cert: Buffer; key: Buffer };
  /** Allow TCP without TLS and token. */
  insecure?: boolean;
  log?: Logger;
}

export interface RunningRpcServer {
  /** The bound endpoint (TCP port 0 resolved). */
  readonly endpoint: RpcEndpoint;
  /** Finishes in-flight calls, then stops. */
  close(): Promise<void>;
}

/** A service and what implements it; made by `implement`, which checks that the two match. */
export interface Implementation {
  readonly service: ServiceDef;
  readonly impl: object;
}

export function implement<D extends ServiceDef>(service: D, impl: Impl<D>): Implementation {
  return { service, impl };
}

type UnaryFn = (req: unknown, ctx: CallContext) => Promise<unknown>;
type StreamFn = (req: unknown, ctx: CallContext) => AsyncIterable<unknown>;

export async function serve(services: readonly Implementation[], options: RpcServerOptions): Promise<RunningRpcServer> {
  const log = options.log ?? createLogger("rpc");
  if (services.length === 0) throw new InvalidArgumentError("serve: no services");
  const tls = options.endpoint.kind === "tcp" ? options.tls : undefined;
  if (options.endpoint.kind === "tcp" && options.insecure !== true && (tls === undefined || options.token === undefined)) {
    throw new InvalidArgumentError("gRPC over TCP needs TLS (--tls-cert, --tls-key) and a bearer token (--token-file), or --insecure");
  }
  const auth = new BearerAuth(options.token);
  const server = new Server({ "grpc.max_receive_message_length": RECEIVE_LIMIT_BYTES });
  for (const { service, impl } of services) server.addService(service.grpc, handlers(service, impl, auth, log));
  // One reflection service describes every file: it can be registered only once.
  addReflection(server, [...new Set(services.map((s) => s.service.protoFile))]);

  if (options.endpoint.kind === "unix") {
    mkdirSync(dirname(options.endpoint.path), { recursive: true });
    rmSync(options.endpoint.path, { force: true });
  }
  const port = await new Promise<number>((resolve, reject) => {
    const creds = tls ? ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false) : ServerCredentials.createInsecure();
    server.bindAsync(grpcAddress(options.endpoint), creds, (e, p) => (e ? reject(e) : resolve(p)));
  });
  const endpoint: RpcEndpoint = options.endpoint.kind === "tcp" ? { ...options.endpoint, port, tls: tls !== undefined } : options.endpoint;
  const names = services.map((s) => s.service.fullName.slice(s.service.fullName.lastIndexOf(".") + 1));
  log.debug(`gRPC ${names.join(", ")} on ${formatEndpoint(endpoint)}`);
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

function handlers(service: ServiceDef, impl: object, auth: BearerAuth, log: Logger): UntypedServiceImplementation {
  // `implement` checked impl against the table; here the methods are looked up by key.
  const table = impl as Record<string, UnaryFn | StreamFn>;
  const out: UntypedServiceImplementation = {};
  for (const [key, spec] of Object.entries(service.methods)) {
    const method = table[key];
    if (method === undefined) throw new InvalidArgumentError(`${service.fullName}: no implementation of ${spec.name}`);
    const bound = method.bind(impl) as (req: unknown, ctx: CallContext) => Promise<unknown> | AsyncIterable<unknown>;
    // Field limits (limits.ts) are checked before the implementation sees the request.
    const fn = (req: unknown, ctx: CallContext): Promise<unknown> | AsyncIterable<unknown> => {
      checkRequestLimits(service.fullName, spec.name, req);
      return bound(req, ctx);
    };
    out[key] = spec.stream ? streamHandler(spec.name, fn as StreamFn, auth, log) : unaryHandler(spec.name, fn as UnaryFn, auth, log);
  }
  return out;
}

function context(call: { getPeer(): string; on(ev: "cancelled", f: () => void): unknown }): { ctx: CallContext; abort: AbortController } {
  const abort = new AbortController();
  call.on("cancelled", () => abort.abort());
  return { ctx: { peer: call.getPeer(), signal: abort.signal }, abort };
}

function unaryHandler(name: string, fn: UnaryFn, auth: BearerAuth, log: Logger) {
  return (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>): void => {
    const { ctx } = context(call);
    const run = async (): Promise<unknown> => {
      auth.check(call.metadata);
      return fn(call.request, ctx);
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

function streamHandler(name: string, fn: StreamFn, auth: BearerAuth, log: Logger) {
  return (call: ServerWritableStream<unknown, unknown>): void => {
    const { ctx, abort } = context(call);
    const run = async (): Promise<void> => {
      auth.check(call.metadata);
      for await (const msg of fn(call.request, ctx)) {
        if (abort.signal.aborted) return;
        if (!call.write(msg)) await Promise.race([once(call, "drain"), once(abort.signal, "abort")]);
      }
    };
    run().then(
      () => call.end(),
      (e: unknown) => {
        const s = toStatus(e);
        log.debug(`${name}: ${s.code} ${s.details ?? ""}`);
        call.emit("error", s);
      },
    );
  };
}
