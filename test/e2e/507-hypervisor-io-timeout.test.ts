/**
 * The hypervisor's I/O deadline (`hypervisor serve --io-timeout`), against real
 * daemons: with the array process frozen (SIGSTOP), `vm show` (an array call:
 * ListLuns) and `vm start` (an NBD read of the VMX on the datastore LUN) fail
 * within a bounded time with TIMEOUT (exit 1), and the message names the call,
 * the limit and the flag. Nothing is left broken: after SIGCONT the same
 * commands succeed on the same hypervisor process and connections.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectArray } from "../../src/rpc/array-client.js";
import { startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { startHypervisor, type HypervisorDaemon } from "../support/hypervisor-daemon.js";
import { tempDir } from "../support/tools.js";

const IO_TIMEOUT_MS = 2000;
/** The deadline, plus the CLI's start-up (about 1 s) with room for a loaded machine. */
const BOUND_MS = 15_000;

describe("hypervisor I/O deadline against a frozen array", () => {
  const tmp = tempDir("sanbox-e2e-507-");
  let d: ArrayDaemon | undefined;
  let hv: HypervisorDaemon | undefined;
  let frozenPid: number | undefined;

  beforeAll(async () => {
    d = await startArrayDaemon(join(tmp.dir, "array"));
    const rpc = connectArray({ endpoint: d.rpcEndpoint });
    await rpc.createLun({ name: "ds", sizeBytes: 64 * 1024 * 1024 });
    rpc.close();
    hv = await startHypervisor(join(tmp.dir, "hv"), d.rpcEndpoint, ["--io-timeout", String(IO_TIMEOUT_MS)]);
    await hv.cli(["vm", "create", "vm1", "--datastore", "ds", "--disk", "2M"]);
  });
  afterAll(async () => {
    // Never leave a stopped process behind, whatever failed.
    if (frozenPid !== undefined) process.kill(frozenPid, "SIGCONT");
    await hv?.cli(["vm", "stop", "vm1"], { reject: false });
    await hv?.stop();
    await d?.stop();
    tmp.cleanup();
  });

  const timed = async (args: string[]): Promise<{ exitCode: number; stderr: string; stdout: string; ms: number }> => {
    if (hv === undefined) throw new Error("no hypervisor");
    const t0 = Date.now();
    const r = await hv.cli(args, { reject: false });
    return { ...r, ms: Date.now() - t0 };
  };

  it("vm show and vm start fail with TIMEOUT naming the deadline; after SIGCONT both work again", async () => {
    if (hv === undefined || d?.pid === undefined) throw new Error("no daemons");
    const before = await hv.cli(["vm", "show", "vm1", "--json"]);
    expect(JSON.parse(before.stdout)).toMatchObject({ name: "vm1", datastoreLunName: "ds" });

    const pid = d.pid;
    process.kill(pid, "SIGSTOP");
    frozenPid = pid;
    try {
      // An array call: GetVm asks the array for its LUNs (to resolve RDMs) first.
      const show = await timed(["vm", "show", "vm1"]);
      expect(show.exitCode, show.stderr).toBe(1);
      expect(show.stdout).toBe("");
      expect(show.stderr.trim()).toBe(`sanbox: TIMEOUT: the array did not answer ListLuns within ${IO_TIMEOUT_MS} ms (--io-timeout)`);
      expect(show.ms).toBeGreaterThanOrEqual(IO_TIMEOUT_MS);
      expect(show.ms).toBeLessThan(BOUND_MS);

      // An NBD request: starting the workload reads the VMX from the datastore LUN.
      const start = await timed(["vm", "start", "vm1", "--seed", "507", "--json"]);
      expect(start.exitCode, start.stderr).toBe(1);
      expect(JSON.parse(start.stdout)).toEqual({ error: { code: "TIMEOUT", message: `datastore ds (lun/ds): read did not complete within ${IO_TIMEOUT_MS} ms (--io-timeout)` } });
      // No lower bound here: with the lease past its validity, `vm start` first
      // joins the lease keeper's heartbeat already in flight on the frozen path
      // (LeaseKeeper.renew is shared), whose deadline began before this command.
      expect(start.ms).toBeLessThan(BOUND_MS);
      const st = await hv.client.getWorkloadStatus({ vm: "vm1" });
      expect(st.acknowledgedSeq).toBe(0);
    } finally {
      process.kill(pid, "SIGCONT");
      frozenPid = undefined;
    }

    // The same connections answer again: a read that timed out is not a fault.
    const after = await timed(["vm", "show", "vm1", "--json"]);
    expect(after.exitCode, after.stderr).toBe(0);
    expect(JSON.parse(after.stdout)).toMatchObject({ name: "vm1", datastoreLunName: "ds" });
    const started = await hv.json(["vm", "start", "vm1", "--seed", "507"]);
    expect(started).toMatchObject({ state: "RUNNING", seed: 507 });
    await hv.cli(["vm", "stop", "vm1"]);
  }, 90_000);
});
