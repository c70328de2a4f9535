/**
 * A typed, promise-based client of any service defined with defineService
 * (service.ts): unary calls return promises of decoded messages, streaming
 * calls are async iterables, and every failure is the SanboxError the server
 * threw (status.ts), so callers branch on `e.code` whichever daemon they called.
 *
 *   const hv = connect(HYPERVISOR_SERVICE, { endpoint: "unix:/…/hypervisor.sock", token });
 *   const vm = await hv.getVm({ name: "vm1" }, { timeoutMs: 5000 });
 *   hv.close();
 *
 * Invariants: the wire description (path, serializers) is the definition's own,
 * the one the server registers; a configured token goes out as metadata
 * `authorization: Bearer <token>` on every call (auth.ts); `timeoutMs` is a gRPC
 * deadline (DEADLINE_EXCEEDED -> TIMEOUT) and an aborted `signal` cancels the
 * call (CANCELLED). Each connect opens its own grpc-js Client; grpc-js shares
 * the underlying connection between clients of the same target and options,
 * so several services of one endpoint cost one socket.
 */
import { Client, credentials, Metadata, type ChannelOptions, status as Status, type CallOptions as GrpcCallOptions, type MethodDefinition, type ServiceError } from "@grpc/grpc-js";
import { CancelledError, UnavailableError } from "../errors.js";
import { AUTHORIZATION } from "./auth.js";
import { formatEndpoint, grpcAddress, parseEndpoint, type RpcEndpoint } from "./endpoint.js";
import { MAX_MESSAGE_BYTES, type Api, type CallOptions, type ServiceDef } from "./service.js";
import { errorFromStatus, isServiceError } from "./status.js";

export interface ConnectOptions {
  /** unix:PATH, HOST:PORT (plaintext) or tls:HOST:PORT. */
  endpoint: string | RpcEndpoint;
  token?: string;
  /** PEM CA certificate(s) for tls: endpoints; default: the system roots. */
  ca?: Buffer;
  /** The command that starts the daemon, named when nothing answers at the endpoint. */
  startHint?: string;
  /** grpc-js channel options (e.g. reconnect backoff) on top of the message size limit. */
  channelOptions?: ChannelOptions;
}

/** A connected client: the service's methods plus the channel's endpoint and close. */
export type ServiceClient<D extends ServiceDef> = Api<D> & {
  readonly endpoint: RpcEndpoint;
  close(): void;
};

/** grpc-js's words for "no socket file" and "nobody listens"; anything else UNAVAILABLE keeps its own text. */
const NOTHING_LISTENS = /ENOENT|ECONNREFUSED/;

function fromGrpcError(e: unknown, endpoint: RpcEndpoint, startHint: string | undefined): Error {
  if (isServiceError(e)) {
    // One line a person can act on, instead of grpc-js's "No connection established. Last error: …".
    if (e.code === Status.UNAVAILABLE && NOTHING_LISTENS.test(e.details)) {
      const why = /ENOENT/.test(e.details) ? "no socket there" : "connection refused";
      return new UnavailableError(`nothing answers at ${formatEndpoint(endpoint)} (${why})${startHint !== undefined ? `; start it with \`${startHint}\`` : ""}`, { nothingListens: true });
    }
    return errorFromStatus(e.code, e.details, e.metadata);
  }
  return e instanceof Error ? e : new Error(String(e));
}

/** Connects lazily (the first call opens the channel). */
export function connect<D extends ServiceDef>(service: D, options: ConnectOptions): ServiceClient<D> {
  const endpoint = typeof options.endpoint === "string" ? parseEndpoint(options.endpoint) : options.endpoint;
  const creds = endpoint.kind === "tcp" && endpoint.tls ? credentials.createSsl(options.ca ?? null) : credentials.createInsecure();
  const client = new Client(grpcAddress(endpoint), creds, { ...options.channelOptions, "grpc.max_receive_message_length": MAX_MESSAGE_BYTES });
  const token = options.token;

  const metadata = (opts?: CallOptions): Metadata => {
    // grpc-js takes wait-for-ready per call through the metadata's options.
    const md = new Metadata(opts?.waitForReady === true ? { waitForReady: true } : {});
    if (token !== undefined) md.set(AUTHORIZATION, `Bearer ${token}`);
    return md;
  };
  const grpcOptions = (opts: CallOptions | undefined): GrpcCallOptions => (opts?.timeoutMs !== undefined ? { deadline: Date.now() + opts.timeoutMs } : {});

  const unaryCall = (method: MethodDefinition<unknown, unknown>, req: unknown, opts: CallOptions | undefined): Promise<unknown> => {
    if (opts?.signal?.aborted === true) return Promise.reject(new CancelledError());
    return new Promise((resolve, reject) => {
      const call = client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, req, metadata(opts), grpcOptions(opts), (err: ServiceError | null, value?: unknown) => {
        opts?.signal?.removeEventListener("abort", onAbort);
        if (err) reject(fromGrpcError(err, endpoint, options.startHint));
        else resolve(value);
      });
      const onAbort = (): void => call.cancel();
      opts?.signal?.addEventListener("abort", onAbort, { once: true });
    });
  };

  async function* streamCall(method: MethodDefinition<unknown, unknown>, req: unknown, opts: CallOptions | undefined): AsyncIterable<unknown> {
    // As for unary calls: a signal aborted before the call starts never sends it.
    if (opts?.signal?.aborted === true) throw new CancelledError();
    const call = client.makeServerStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, req, metadata(opts), grpcOptions(opts));
    const onAbort = (): void => call.cancel();
    opts?.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const msg of call as AsyncIterable<unknown>) yield msg;
    } catch (e: unknown) {
      throw fromGrpcError(e, endpoint, options.startHint);
    } finally {
      opts?.signal?.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }

  const api: Record<string, unknown> = { endpoint, close: () => client.close() };
  for (const [key, method] of Object.entries(service.grpc)) {
    api[key] = method.responseStream
      ? (req: unknown, opts?: CallOptions) => streamCall(method, req, opts)
      : (req: unknown, opts?: CallOptions) => unaryCall(method, req, opts);
  }
  // The loop built one function per row of the table that Api<D> is derived from.
  return api as ServiceClient<D>;
}

/** Drains a server stream (or any async iterable) into one list: small diffs, tests, the CLI. */
export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
