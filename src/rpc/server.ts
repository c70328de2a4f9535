/**
 * Serves an ArrayServiceImpl over grpc-js. Each handler checks the bearer token,
 * runs the implementation, and maps a thrown error through status.ts. Streaming
 * handlers respect backpressure (await 'drain') and stop when the client cancels.
 * Server reflection of array.proto rides along, unauthenticated (reflection.ts).
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
import { METHODS, type ArrayServiceImpl, type CallContext, type MethodName } from "./methods.js";
import { addReflection } from "./reflection.js";
import { ARRAY_SERVICE } from "./service-definition.js";
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

type UnaryFn = (req: unknown, ctx: CallContext) => Promise<unknown>;
type StreamFn = (req: unknown, ctx: CallContext) => AsyncIterable<unknown>;

export async function serveArray(impl: ArrayServiceImpl, opts: RpcServerOptions): Promise<RunningRpcServer> {
  const log = opts.log ?? createLogger("rpc");
  const tls = opts.endpoint.kind === "tcp" ? opts.tls : undefined;
  if (opts.endpoint.kind === "tcp" && opts.insecure !== true && (tls === undefined || opts.token === undefined)) {
    throw new InvalidArgumentError("gRPC over TCP needs TLS (--tls-cert, --tls-key) and a bearer token (--token-file), or --insecure");
  }
  const auth = new BearerAuth(opts.token);
  const server = new Server({ "grpc.max_receive_message_length": 16 * 1024 * 1024 });
  const handlers: UntypedServiceImplementation = {};
  const table = impl as unknown as Record<MethodName, UnaryFn | StreamFn>;
  for (const key of Object.keys(METHODS) as MethodName[]) {
    const spec = METHODS[key];
    const fn = table[key].bind(impl);
    if (spec.stream) handlers[key] = streamHandler(spec.name, fn as StreamFn, auth, log);
    else handlers[key] = unaryHandler(spec.name, fn as UnaryFn, auth, log);
  }
  server.addService(ARRAY_SERVICE, handlers);
  addReflection(server, "sanbox/array/v1/array.proto"); // schema only, no token (reflection.ts)

  if (opts.endpoint.kind === "unix") {
    mkdirSync(dirname(opts.endpoint.path), { recursive: true });
    rmSync(opts.endpoint.path, { force: true });
  }
  const port = await new Promise<number>((resolve, reject) => {
    const creds = tls ? ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false) : ServerCredentials.createInsecure();
    server.bindAsync(grpcAddress(opts.endpoint), creds, (e, p) => (e ? reject(e) : resolve(p)));
  });
  const endpoint: RpcEndpoint = opts.endpoint.kind === "tcp" ? { ...opts.endpoint, port, tls: tls !== undefined } : opts.endpoint;
  log.debug(`gRPC ArrayService on ${formatEndpoint(endpoint)}`);
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
