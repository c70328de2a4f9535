/**
 * HypervisorService over a real grpc-js channel on a Unix socket, with a fake
 * implementation: errors come back as the same SanboxError codes (status.ts),
 * the optional seed keeps its presence (absent vs 0), and the bearer token is enforced.
 */
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SanboxError, TimeoutError, NotFoundError } from "../../../src/errors.js";
import { silentLogger } from "../../../src/log.js";
import { hv1 } from "../../../src/rpc/hypervisor-proto.js";
import { connectHypervisor, serveHypervisor, type HypervisorServiceImpl } from "../../../src/rpc/hypervisor-service-def.js";
import { tempDir } from "../../support/tools.js";

const status = (vm: string, seed: number): hv1.IWorkloadStatus => ({ vm, state: hv1.WorkloadState.RUNNING, seed });

const fake: HypervisorServiceImpl = {
  listVms: async () => ({ vms: [{ name: "a", disks: [{ slot: "scsi0:0", kind: hv1.DiskKind.RDM, capacityBytes: 2 ** 40 }] }] }),
  getVm: async (req) => {
    throw new NotFoundError(`VM "${req.name}" not found`);
  },
  createVm: async (req) => ({ name: req.name }),
  deleteVm: async () => ({}),
  startWorkload: async (req) => status(req.vm, typeof req.seed === "number" ? req.seed : 4242),
  stopWorkload: async (req) => status(req.vm, 0),
  getWorkloadStatus: async (req) => status(req.vm, 0),
  quiesceVm: async (req) => {
    throw new TimeoutError(`VM ${req.vm}: quiesce did not drain within ${req.timeoutMs} ms; resumed`);
  },
  resumeVm: async (req) => ({ ...status(req.vm, 0), quiesced: false }),
};

describe("HypervisorService over gRPC", () => {
  const tmp = tempDir("sanbox-hv-rpc-");
  afterAll(() => tmp.cleanup());

  it("maps errors, keeps optional-seed presence and int64 values", async () => {
    const server = await serveHypervisor(fake, { endpoint: { kind: "unix", path: join(tmp.dir, "hv.sock") }, log: silentLogger });
    const c = connectHypervisor({ endpoint: server.endpoint });
    try {
      const list = await c.listVms({});
      expect(list.vms[0]?.disks[0]?.capacityBytes).toBe(2 ** 40);
      await expect(c.getVm({ name: "x" })).rejects.toMatchObject({ code: "NOT_FOUND" });
      const err = await c.quiesceVm({ vm: "a", timeoutMs: 5 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SanboxError);
      expect((err as SanboxError).code).toBe("TIMEOUT");
      expect((await c.startWorkload({ vm: "a" })).seed).toBe(4242);
      expect((await c.startWorkload({ vm: "a", seed: 0 })).seed).toBe(0);
      expect((await c.startWorkload({ vm: "a", seed: 7 })).seed).toBe(7);
    } finally {
      c.close();
      await server.close();
    }
  });

  it("enforces a bearer token when the server has one", async () => {
    const server = await serveHypervisor(fake, { endpoint: { kind: "unix", path: join(tmp.dir, "hv2.sock") }, token: "s3cret", log: silentLogger });
    const anon = connectHypervisor({ endpoint: server.endpoint });
    const auth = connectHypervisor({ endpoint: server.endpoint, token: "s3cret" });
    try {
      await expect(anon.listVms({})).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
      expect((await auth.listVms({})).vms).toHaveLength(1);
    } finally {
      anon.close();
      auth.close();
      await server.close();
    }
  });
});
