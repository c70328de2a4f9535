/**
 * The generic service layer (service.ts, server.ts, client.ts) on a tiny
 * service of its own, served in-process on a Unix socket: unary and
 * server-streaming calls, error mapping both ways, the bearer token, call
 * deadlines and signals, and two services on one server with one reflection
 * service describing both files (the shape a CSI driver needs).
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Client, credentials } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { afterAll, describe, expect, it } from "vitest";
import { CancelledError, NotFoundError, SanboxError } from "../../../src/errors.js";
import { silentLogger } from "../../../src/log.js";
import { collect, connect, type ServiceClient } from "../../../src/rpc/client.js";
import { grpcAddress, type RpcEndpoint } from "../../../src/rpc/endpoint.js";
import { HYPERVISOR_SERVICE, type HypervisorServiceImpl } from "../../../src/rpc/hypervisor-service-def.js";
import { v1 } from "../../../src/rpc/proto.js";
import { implement, serve, type RpcServerOptions } from "../../../src/rpc/server.js";
import { defineService, serverStreaming, unary, type Impl } from "../../../src/rpc/service.js";
import { tempDir } from "../../support/tools.js";

// Messages borrowed from the array contract; the service name is the test's own.
const PROBE = defineService(
  "sanbox.test.v1.Probe",
  {
    echo: unary("Echo", v1.GetLunRequest, v1.Lun),
    count: serverStreaming("Count", v1.GetAllocatedBlocksRequest, v1.BlockMetadataResponse),
  },
  { protoFile: "sanbox/array/v1/array.proto" },
);

const seen: string[] = [];
let lastStreamSignal: AbortSignal | undefined;

const probe: Impl<typeof PROBE> = {
  echo: async (req, ctx) => {
    seen.push(`echo ${req.name}`);
    if (req.name === "missing") throw new NotFoundError(`LUN "${req.name}" not found`);
    if (req.name === "boom") throw new Error("not a SanboxError");
    if (req.name === "slow") await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
    return { name: req.name, lunId: req.lunId, sizeBytes: 2 ** 40 };
  },
  count: async function* (req, ctx) {
    seen.push(`count ${req.maxResults}`);
    lastStreamSignal = ctx.signal;
    for (let i = 0; i < req.maxResults; i++) {
      if (i === 3 && req.snapshotId === "fail") throw new NotFoundError("snapshot gone mid-stream");
      yield { volumeCapacityBytes: 100, blockMetadata: [{ byteOffset: i, sizeBytes: 1 }] };
    }
    // An endless stream unless the client stops reading: the server must notice the cancel.
    if (req.snapshotId === "endless") for (let i = 0; !ctx.signal.aborted; i++) yield { volumeCapacityBytes: 100, blockMetadata: [{ byteOffset: i, sizeBytes: 1 }] };
  },
};

const unsupported = (): Promise<never> => Promise.reject(new SanboxError("UNSUPPORTED", "not in this test"));
const hypervisorImpl: HypervisorServiceImpl = {
  listVms: async () => ({ vms: [{ name: "vm1" }] }),
  getVm: unsupported,
  createVm: unsupported,
  deleteVm: unsupported,
  startWorkload: unsupported,
  stopWorkload: unsupported,
  getWorkloadStatus: unsupported,
  quiesceVm: unsupported,
  resumeVm: unsupported,
};

// @ts-expect-error an implementation must have every method of its table, typed by its codecs
implement(PROBE, { echo: async () => ({ name: 1 }) });

describe("generic gRPC service layer", () => {
  const tmp = tempDir("sanbox-rpc-service-");
  afterAll(() => tmp.cleanup());
  let n = 0;
  const options = (extra: Partial<RpcServerOptions> = {}): RpcServerOptions => ({ endpoint: { kind: "unix", path: join(tmp.dir, `s${n++}.sock`) }, log: silentLogger, ...extra });

  /** Serves PROBE alone, runs `fn` with a client of it (no token), then closes both. */
  async function withProbe(fn: (client: ServiceClient<typeof PROBE>, endpoint: RpcEndpoint) => Promise<void>, extra: Partial<RpcServerOptions> = {}): Promise<void> {
    const server = await serve([implement(PROBE, probe)], options(extra));
    const client = connect(PROBE, { endpoint: server.endpoint });
    try {
      await fn(client, server.endpoint);
    } finally {
      client.close();
      await server.close();
    }
  }

  it("unary: typed request in, decoded response out (proto3 defaults present, int64 as numbers)", async () => {
    await withProbe(async (client) => {
      const lun = await client.echo({ name: "a", lunId: "lun-1" });
      expect(lun).toMatchObject({ name: "a", lunId: "lun-1", sizeBytes: 2 ** 40, naa: "", mappedHostIds: [] });
    });
  });

  it("server streaming: every message in order, errors mid-stream mapped, and the server sees a cancel", async () => {
    await withProbe(async (client) => {
      const all = await collect(client.count({ maxResults: 5 }));
      expect(all.map((m) => m.blockMetadata[0]?.byteOffset)).toEqual([0, 1, 2, 3, 4]);
      const err = await collect(client.count({ maxResults: 5, snapshotId: "fail" })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NotFoundError);
      expect((err as SanboxError).message).toBe("snapshot gone mid-stream");

      let read = 0;
      for await (const _ of client.count({ maxResults: 1, snapshotId: "endless" })) if (++read === 10) break;
      await expect.poll(() => lastStreamSignal?.aborted).toBe(true);
    });
  });

  it("maps errors through status.ts: the catalogue class and code, anything else IO_ERROR", async () => {
    await withProbe(async (client) => {
      const missing = await client.echo({ name: "missing" }).catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(NotFoundError);
      expect(missing).toMatchObject({ code: "NOT_FOUND", message: 'LUN "missing" not found' });
      await expect(client.echo({ name: "boom" })).rejects.toMatchObject({ code: "IO_ERROR", message: "internal error: not a SanboxError" });
    });
  });

  it("checks the bearer token before any implementation code, unary and streaming alike", async () => {
    await withProbe(
      async (anon, endpoint) => {
        const wrong = connect(PROBE, { endpoint, token: "guess" });
        const good = connect(PROBE, { endpoint, token: "s3cret" });
        try {
          seen.length = 0;
          await expect(anon.echo({ name: "x" })).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
          await expect(wrong.echo({ name: "x" })).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
          await expect(collect(anon.count({ maxResults: 2 }))).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
          expect(seen).toEqual([]);
          expect((await good.echo({ name: "x" })).name).toBe("x");
          expect(await collect(good.count({ maxResults: 2 }))).toHaveLength(2);
        } finally {
          wrong.close();
          good.close();
        }
      },
      { token: "s3cret" },
    );
  });

  it("CallOptions: timeoutMs is TIMEOUT, an aborted signal CANCELLED (an already aborted one sends nothing)", async () => {
    await withProbe(async (client) => {
      await expect(client.echo({ name: "slow" }, { timeoutMs: 50 })).rejects.toMatchObject({ code: "TIMEOUT" });
      const abort = new AbortController();
      const call = client.echo({ name: "slow" }, { signal: abort.signal });
      setTimeout(() => abort.abort(), 50);
      await expect(call).rejects.toMatchObject({ code: "CANCELLED" });

      seen.length = 0;
      const aborted = AbortSignal.abort();
      await expect(client.echo({ name: "never" }, { signal: aborted })).rejects.toBeInstanceOf(CancelledError);
      await expect(collect(client.count({ maxResults: 1 }, { signal: aborted }))).rejects.toBeInstanceOf(CancelledError);
      expect(seen).toEqual([]);
    });
  });

  it("serves several services on one endpoint, with one reflection service describing every file", async () => {
    const server = await serve([implement(PROBE, probe), implement(HYPERVISOR_SERVICE, hypervisorImpl)], options());
    const probeClient = connect(PROBE, { endpoint: server.endpoint });
    const hvClient = connect(HYPERVISOR_SERVICE, { endpoint: server.endpoint });
    try {
      expect((await probeClient.echo({ name: "p" })).name).toBe("p");
      expect((await hvClient.listVms({})).vms.map((vm) => vm.name)).toEqual(["vm1"]);
      const services = await listServices(grpcAddress(server.endpoint));
      expect(services).toEqual(expect.arrayContaining(["sanbox.array.v1.ArrayService", "sanbox.hypervisor.v1.HypervisorService"]));
    } finally {
      probeClient.close();
      hvClient.close();
      await server.close();
    }
  });

  it("refuses plaintext TCP without --insecure", async () => {
    await expect(serve([implement(PROBE, probe)], { endpoint: { kind: "tcp", host: "127.0.0.1", port: 0, tls: false }, log: silentLogger })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
  });
});

/** ServerReflection v1 list_services, with a client built from @grpc/reflection's own .proto. */
async function listServices(target: string): Promise<string[]> {
  const pkgDir = dirname(createRequire(import.meta.url).resolve("@grpc/reflection/package.json"));
  const def = loadSync("grpc/reflection/v1/reflection.proto", { includeDirs: [join(pkgDir, "build", "proto")], oneofs: true });
  const service = def["grpc.reflection.v1.ServerReflection"];
  if (service === undefined || "format" in service) throw new Error("no ServerReflection in reflection.proto");
  const method = service["ServerReflectionInfo"];
  if (method === undefined) throw new Error("no ServerReflectionInfo");
  const client = new Client(target, credentials.createInsecure());
  try {
    const call = client.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize);
    const done = new Promise<unknown>((resolve, reject) => {
      call.on("data", resolve);
      call.on("error", reject);
    });
    call.write({ listServices: "*" });
    call.end();
    const res = (await done) as { listServicesResponse?: { service?: { name?: string }[] } };
    return (res.listServicesResponse?.service ?? []).map((s) => s.name ?? "");
  } finally {
    client.close();
  }
}
