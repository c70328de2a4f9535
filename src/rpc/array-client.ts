/**
 * A typed, promise-based ArrayService client over grpc-js: unary calls return
 * promises of decoded messages, streaming calls are async iterables, and every
 * failure is the SanboxError the server threw (status.ts). This is the default
 * array driver of the backup plugin.
 *
 *   const array = ArrayClient.connect({ endpoint: "unix:/…/array.sock", token });
 *   const lun = await array.createLun({ name: "db", sizeBytes: 1 << 30 });
 *   for await (const m of array.getChangedBlocks({ baseSnapshotId, targetSnapshotId })) …
 *   array.close();
 */
import { Client, credentials, Metadata, type CallOptions as GrpcCallOptions, type ServiceError } from "@grpc/grpc-js";
import { CancelledError } from "../errors.js";
import { AUTHORIZATION } from "./auth.js";
import { grpcAddress, parseEndpoint, type RpcEndpoint } from "./endpoint.js";
import { METHODS, type ArrayApi, type CallOptions, type MethodName } from "./methods.js";
import { SERVICE_NAME } from "./proto.js";
import { errorFromStatus, isServiceError } from "./status.js";

export interface ArrayClientOptions {
  /** unix:PATH, HOST:PORT (plaintext) or tls:HOST:PORT. */
  endpoint: string | RpcEndpoint;
  token?: string;
  /** PEM CA certificate(s) for tls: endpoints; default: the system roots. */
  ca?: Buffer;
}

interface AnyCodec {
  encode(x: unknown): { finish(): Uint8Array };
  decode(b: Uint8Array): unknown;
}

function fromGrpcError(e: unknown): Error {
  if (isServiceError(e)) return errorFromStatus(e.code, e.details, e.metadata);
  return e instanceof Error ? e : new Error(String(e));
}

export interface ArrayClient extends ArrayApi {
  close(): void;
  readonly endpoint: RpcEndpoint;
}

class GrpcArrayClient {
  readonly endpoint: RpcEndpoint;
  private readonly client: Client;
  private readonly token: string | undefined;

  constructor(opts: ArrayClientOptions) {
    this.endpoint = typeof opts.endpoint === "string" ? parseEndpoint(opts.endpoint) : opts.endpoint;
    this.token = opts.token;
    const creds = this.endpoint.kind === "tcp" && this.endpoint.tls ? credentials.createSsl(opts.ca ?? null) : credentials.createInsecure();
    this.client = new Client(grpcAddress(this.endpoint), creds, {
      "grpc.max_receive_message_length": 16 * 1024 * 1024,
    });
  }

  close(): void {
    this.client.close();
  }

  private metadata(): Metadata {
    const md = new Metadata();
    if (this.token !== undefined) md.set(AUTHORIZATION, `Bearer ${this.token}`);
    return md;
  }

  private grpcOptions(opts: CallOptions | undefined): GrpcCallOptions {
    return opts?.timeoutMs !== undefined ? { deadline: Date.now() + opts.timeoutMs } : {};
  }

  unary(key: MethodName, req: unknown, opts: CallOptions | undefined): Promise<unknown> {
    const spec = METHODS[key];
    const request = spec.request as unknown as AnyCodec;
    const response = spec.response as unknown as AnyCodec;
    if (opts?.signal?.aborted === true) return Promise.reject(new CancelledError());
    return new Promise((resolve, reject) => {
      const call = this.client.makeUnaryRequest(
        `/${SERVICE_NAME}/${spec.name}`,
        (v: unknown) => Buffer.from(request.encode(v).finish()),
        (b: Buffer) => response.decode(b),
        req,
        this.metadata(),
        this.grpcOptions(opts),
        (err: ServiceError | null, value?: unknown) => {
          opts?.signal?.removeEventListener("abort", onAbort);
          if (err) reject(fromGrpcError(err));
          else resolve(value);
        },
      );
      const onAbort = (): void => call.cancel();
      opts?.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  async *stream(key: MethodName, req: unknown, opts: CallOptions | undefined): AsyncIterable<unknown> {
    const spec = METHODS[key];
    const request = spec.request as unknown as AnyCodec;
    const response = spec.response as unknown as AnyCodec;
    const call = this.client.makeServerStreamRequest(
      `/${SERVICE_NAME}/${spec.name}`,
      (v: unknown) => Buffer.from(request.encode(v).finish()),
      (b: Buffer) => response.decode(b),
      req,
      this.metadata(),
      this.grpcOptions(opts),
    );
    const onAbort = (): void => call.cancel();
    opts?.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const msg of call as AsyncIterable<unknown>) yield msg;
    } catch (e: unknown) {
      throw fromGrpcError(e);
    } finally {
      opts?.signal?.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }
}

/** Connects lazily (the first call opens the channel). */
export function connectArray(opts: ArrayClientOptions): ArrayClient {
  const c = new GrpcArrayClient(opts);
  const api: Record<string, unknown> = {
    close: () => c.close(),
    endpoint: c.endpoint,
  };
  for (const key of Object.keys(METHODS) as MethodName[]) {
    api[key] = METHODS[key].stream
      ? (req: unknown, o?: CallOptions) => c.stream(key, req, o)
      : (req: unknown, o?: CallOptions) => c.unary(key, req, o);
  }
  return api as unknown as ArrayClient;
}

/** Drains a block-metadata stream into one list (small diffs, tests, the CLI). */
export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
