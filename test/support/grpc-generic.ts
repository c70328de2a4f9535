/**
 * Calls through a bare grpc-js Client, given only a method path and its
 * (de)serializers: what a tool built from a .proto file or from reflection
 * has, with no sanbox client code in between. Replies come back as plain
 * objects; a failed call rejects with the grpc-js ServiceError (code, details).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { startArrayDaemon, type ArrayDaemon } from "./array-daemon.js";
import { tempDir } from "./tools.js";

export interface WireMethod {
  readonly path: string;
  readonly serialize: (req: object) => Buffer;
  readonly deserialize: (bytes: Buffer) => object;
}

export function bearer(token: string): Metadata {
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  return md;
}

const DEADLINE_MS = 10_000;

export function unaryCall(client: Client, m: WireMethod, req: object, md: Metadata): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(m.path, m.serialize, m.deserialize, req, md, { deadline: Date.now() + DEADLINE_MS }, (err: ServiceError | null, res?: object) => {
      if (err !== null) reject(err);
      else resolve({ ...(res ?? {}) });
    });
  });
}

export function streamCall(client: Client, m: WireMethod, req: object, md: Metadata): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const out: Record<string, unknown>[] = [];
    const call = client.makeServerStreamRequest(m.path, m.serialize, m.deserialize, req, md, { deadline: Date.now() + DEADLINE_MS });
    call.on("data", (msg: object) => out.push({ ...msg }));
    call.on("error", reject);
    call.on("end", () => resolve(out));
  });
}

/** The ServiceError a call failed with (and fails the test if it did not fail). */
export async function callError(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (e: unknown) {
    if (e instanceof Error && "code" in e && typeof e.code === "number") return e as ServiceError;
    throw e;
  }
  throw new Error("expected the call to fail");
}

export interface GenericArray {
  d: ArrayDaemon;
  /** A bare grpc-js Client on the array's endpoint (no service bound). */
  client: Client;
  /** Close the client, stop the daemon, remove the directory. */
  stop(): Promise<void>;
}

/** An array daemon in a temp directory that requires bearer `token`, and a bare client to it. */
export async function startGenericArray(prefix: string, token: string): Promise<GenericArray> {
  const tmp = tempDir(prefix);
  writeFileSync(join(tmp.dir, "token"), `${token}\n`);
  const d = await startArrayDaemon(join(tmp.dir, "array"), ["--token-file", join(tmp.dir, "token")]);
  const client = new Client(d.rpcEndpoint, credentials.createInsecure());
  return {
    d,
    client,
    stop: async () => {
      client.close();
      await d.stop();
      tmp.cleanup();
    },
  };
}
