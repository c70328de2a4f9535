/**
 * The e2e setup the backup and hypervisor tests share: a temp dir, a real array
 * daemon with a datastore LUN and an RDM LUN, a real hypervisor daemon, and VM
 * "vm1" (one VMDK plus the RDM; sizes optional) running the dependent-write
 * workload until it has acknowledged `warmUp` operations. `stop()` tears it all down, tolerating a
 * partly started fixture.
 */
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { connectArray, type ArrayClient } from "../../src/rpc/array-client.js";
import { connectHypervisor, type HypervisorClient } from "../../src/rpc/hypervisor-service-def.js";
import { startArrayDaemon, type ArrayDaemon } from "./array-daemon.js";
import { startHypervisor, type HypervisorDaemon } from "./hypervisor-daemon.js";
import { tempDir } from "./tools.js";

export interface VmFixture {
  dir: string;
  d: ArrayDaemon;
  rpc: ArrayClient;
  hv: HypervisorDaemon;
  hvc: HypervisorClient;
  stop(): Promise<void>;
}

export interface VmFixtureOptions {
  seed: number;
  /** Workload operations per second (`vm start --rate`); the CLI default if absent. */
  rate?: number;
  /** Acknowledged operations to wait for before returning. */
  warmUp: number;
  /** Sizes: the datastore LUN and the RDM LUN in bytes (64 MiB, 4 MiB), the VMDK as `vm create --disk` takes it ("2M"). */
  datastoreBytes?: number;
  rdmBytes?: number;
  disk?: string;
  /** Extra `hypervisor serve` arguments (--io-timeout, --reconnect-limit). */
  hypervisorArgs?: string[];
}

export async function startVmFixture(prefix: string, o: VmFixtureOptions): Promise<VmFixture> {
  const tmp = tempDir(prefix);
  let d: ArrayDaemon | undefined;
  let rpc: ArrayClient | undefined;
  let hv: HypervisorDaemon | undefined;
  let hvc: HypervisorClient | undefined;
  const stop = async (): Promise<void> => {
    hvc?.close();
    await hv?.cli(["vm", "stop", "vm1"], { reject: false });
    await hv?.stop();
    rpc?.close();
    await d?.stop();
    tmp.cleanup();
  };
  try {
    d = await startArrayDaemon(join(tmp.dir, "array"));
    rpc = connectArray({ endpoint: d.rpcEndpoint });
    await rpc.createLun({ name: "ds", sizeBytes: o.datastoreBytes ?? 64 * 1024 * 1024 });
    await rpc.createLun({ name: "rdm", sizeBytes: o.rdmBytes ?? 4 * 1024 * 1024 });
    hv = await startHypervisor(join(tmp.dir, "hv"), d.rpcEndpoint, o.hypervisorArgs ?? []);
    hvc = connectHypervisor({ endpoint: hv.endpoint });
    await hv.cli(["vm", "create", "vm1", "--datastore", "ds", "--disk", o.disk ?? "2M", "--rdm", "rdm"]);
    await hv.cli(["vm", "start", "vm1", "--seed", String(o.seed), ...(o.rate !== undefined ? ["--rate", String(o.rate)] : [])]);
    while ((await hv.client.getWorkloadStatus({ vm: "vm1" })).acknowledgedSeq < o.warmUp) await sleep(10);
    return { dir: tmp.dir, d, rpc, hv, hvc, stop };
  } catch (e: unknown) {
    await stop().catch(() => undefined);
    throw e;
  }
}
