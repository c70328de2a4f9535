/**
 * `sanbox hypervisor serve` (the simulated hypervisor daemon) and `sanbox vm …`
 * (its client, one HypervisorService call per command).
 *
 *   sanbox hypervisor serve [--array ENDPOINT] [--rpc unix:PATH] [--data DIR] [--io-timeout MS] [--reconnect-limit N] [--lease-timeout MS]
 *   sanbox vm create NAME --datastore LUN --disk 8G [--disk …] [--rdm LUN …]
 *   sanbox vm list | show NAME | delete NAME [--force]
 *   sanbox vm start NAME [--workload dependent] [--rate R] [--seed S]
 *   sanbox vm status | quiesce [--timeout MS] | resume | stop NAME
 *
 * The daemon reaches the array through its gRPC endpoint (--array, else
 * $SANBOX_ENDPOINT, else the local array's socket; $SANBOX_TOKEN is the bearer
 * token) and the NBD URIs the array hands out. `vm` commands reach the
 * hypervisor through --endpoint, else $SANBOX_HYPERVISOR_ENDPOINT, else the
 * local daemon's socket ($SANBOX_HYPERVISOR_TOKEN is the bearer token when the
 * daemon runs with --token-file). Human tables by default, `--json` for data; logs and
 * errors on stderr (cli/run.ts).
 */
import { readFile } from "node:fs/promises";
import { waitForStopSignal } from "./run.js";
import type { Command } from "commander";
import { InvalidArgumentError, errorMessage, quote } from "../src/errors.js";
import { createLogger } from "../src/log.js";
import { parseTokenFile } from "../src/rpc/auth.js";
import { formatEndpoint, parseEndpoint } from "../src/rpc/endpoint.js";
import { hv1 } from "../src/rpc/hypervisor-proto.js";
import { connectHypervisor, type HypervisorClient } from "../src/rpc/hypervisor-service-def.js";
import type { Decoded } from "../src/rpc/service.js";
import { formatSize, parseSize } from "../src/size.js";
import { DEFAULT_IO_TIMEOUT_MS, DEFAULT_LEASE_TIMEOUT_MS, defaultHypervisorDataDir, hypervisorSocketPath, startHypervisorDaemon } from "../simulator/hypervisor/daemon.js";
import { DEFAULT_RECONNECT_LIMIT } from "../simulator/hypervisor/reconnect-policy.js";
import { defaultEndpoint as defaultArrayEndpoint } from "./array-paths.js";
import { formatTable } from "./table.js";

// ------------------------------------------------------------------ paths

function defaultHypervisorEndpoint(): string {
  const env = process.env.SANBOX_HYPERVISOR_ENDPOINT;
  return env !== undefined && env !== "" ? env : `unix:${hypervisorSocketPath(defaultHypervisorDataDir())}`;
}

// ------------------------------------------------------------------ serve

interface ServeOptions {
  array?: string;
  tokenFile?: string;
  rpc?: string;
  data?: string;
  insecure?: boolean;
  json?: boolean;
  ioTimeout: string;
  reconnectLimit: string;
  leaseTimeout: string;
}

export function registerHypervisor(program: Command): Command {
  const hv = program.command("hypervisor").description("the simulated hypervisor (datastores over NBD, VMs, workload, quiesce)");
  hv.command("serve")
    .description("run the hypervisor daemon: gRPC HypervisorService; prints its endpoint on stdout")
    .option("--array <endpoint>", "the array's control endpoint (default: $SANBOX_ENDPOINT or the local array); $SANBOX_TOKEN is its bearer token")
    .option("--rpc <endpoint>", "control endpoint: unix:PATH, or HOST:PORT with --insecure (default: unix:DATA/hypervisor.sock)")
    .option("--data <dir>", "state directory (default: $SANBOX_HYPERVISOR_HOME or ~/.local/share/sanbox/hypervisor)")
    .option("--token-file <file>", "require this bearer token (first line of the file) on every call; clients send $SANBOX_HYPERVISOR_TOKEN")
    .option("--insecure", "allow plaintext gRPC over TCP")
    .option("--io-timeout <ms>", "deadline of every array call and NBD request; past it the call fails with TIMEOUT", String(DEFAULT_IO_TIMEOUT_MS))
    .option("--reconnect-limit <n>", "connection attempts (backoff 100 ms doubling to 2 s) before a lost path to a LUN is FAILED", String(DEFAULT_RECONNECT_LIMIT))
    .option("--lease-timeout <ms>", "a datastore's writer lease is stale this long after its last heartbeat (heartbeats every quarter of it)", String(DEFAULT_LEASE_TIMEOUT_MS))
    .option("--json", "print the endpoint as one JSON line ({rpc})")
    .action(async (options: ServeOptions) => serve(options));
  return hv;
}

async function serve(options: ServeOptions): Promise<void> {
  const log = createLogger("hypervisor");
  let token: string | undefined;
  if (options.tokenFile !== undefined) {
    const file = options.tokenFile;
    token = parseTokenFile(
      await readFile(file, "utf8").catch((e: unknown) => {
        throw new InvalidArgumentError(`cannot read token file ${file}: ${errorMessage(e)}`);
      }),
    );
    if (token === undefined) throw new InvalidArgumentError(`token file ${file} is empty`);
  }
  const arrayToken = process.env.SANBOX_TOKEN;
  const ioTimeoutMs = parseIntOpt("--io-timeout", options.ioTimeout);
  const reconnectLimit = parseIntOpt("--reconnect-limit", options.reconnectLimit);
  const leaseTimeoutMs = parseIntOpt("--lease-timeout", options.leaseTimeout);
  if (ioTimeoutMs === 0) throw new InvalidArgumentError("--io-timeout must be at least 1 ms");
  if (reconnectLimit === 0) throw new InvalidArgumentError("--reconnect-limit must be at least 1");
  const daemon = await startHypervisorDaemon({
    dataDir: options.data ?? defaultHypervisorDataDir(),
    array: options.array ?? defaultArrayEndpoint(),
    insecure: options.insecure === true,
    ioTimeoutMs,
    reconnectLimit,
    leaseTimeoutMs,
    log,
    ...(options.rpc !== undefined ? { rpc: parseEndpoint(options.rpc) } : {}),
    ...(token !== undefined ? { token } : {}),
    ...(arrayToken !== undefined && arrayToken !== "" ? { arrayToken } : {}),
  });
  // Listen before announcing: whoever reads the endpoint line may signal at once.
  // The shutdown closes array paths whose calls run under --io-timeout: bound it past that.
  const stopped = waitForStopSignal(log, ioTimeoutMs + 10_000);
  process.stdout.write(options.json === true ? `${JSON.stringify({ rpc: formatEndpoint(daemon.rpc) })}\n` : `rpc ${formatEndpoint(daemon.rpc)}\n`);
  log.info(`serving ${daemon.dataDir}: rpc ${formatEndpoint(daemon.rpc)}, array ${formatEndpoint(daemon.array)}`);
  await stopped.received;
  await stopped.shutdown(() => daemon.close());
  log.info("stopped");
}

// ------------------------------------------------------------------ vm client

interface Common {
  endpoint?: string;
  json?: boolean;
}

function withCommon(cmd: Command): Command {
  return cmd
    .option("--endpoint <endpoint>", "hypervisor endpoint: unix:PATH or HOST:PORT (default: $SANBOX_HYPERVISOR_ENDPOINT or the local daemon)")
    .option("--json", "machine-readable output");
}

async function using<T>(options: Common, fn: (c: HypervisorClient) => Promise<T>): Promise<T> {
  const t = process.env.SANBOX_HYPERVISOR_TOKEN;
  const c = connectHypervisor({ endpoint: options.endpoint ?? defaultHypervisorEndpoint(), ...(t !== undefined && t !== "" ? { token: t } : {}) });
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

type Vm = Decoded<hv1.IVm>;
type Status = Decoded<hv1.IWorkloadStatus>;

function plainVm(v: Vm): Record<string, unknown> {
  return hv1.Vm.toObject(v as hv1.Vm, { defaults: true, arrays: true, enums: String });
}
function plainStatus(s: Status): Record<string, unknown> {
  return hv1.WorkloadStatus.toObject(s as hv1.WorkloadStatus, { defaults: true, enums: String });
}

function stateName(s: Status | undefined): string {
  if (s === undefined) return "-";
  const name = hv1.WorkloadState[s.state] ?? "UNKNOWN";
  return `${name.toLowerCase()}${s.quiesced ? " (quiesced)" : ""}`;
}

function statusLine(s: Status): string {
  const rate = s.rate === 0 ? "unlimited" : `${s.rate}/s`;
  return `${s.vm}: ${stateName(s)}, workload ${s.workload === "" ? "-" : s.workload}, seed ${s.seed}, rate ${rate}, acknowledged ${s.acknowledgedSeq} (${s.writes} writes, ${s.trims} trims, ${s.grows} grows)${s.error !== "" ? `, error: ${s.error}` : ""}\n`;
}

function vmDetails(v: Vm): string {
  const head = `${v.name}: ${v.vmxPath} on datastore ${v.datastoreLunName} (${v.datastoreLunId})\n`;
  const rows = v.disks.map((d) => [
    d.slot,
    d.kind === hv1.DiskKind.VMDK ? "vmdk" : "rdm",
    formatSize(d.capacityBytes),
    d.kind === hv1.DiskKind.VMDK ? d.flatPath : `${d.rdmNaa} (LUN ${d.rdmLunName === "" ? "not found" : d.rdmLunName})`,
  ]);
  return head + formatTable(["SLOT", "KIND", "CAPACITY", "BACKING"], rows) + (v.workload ? statusLine(v.workload) : "");
}

function collectOpt(value: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), value];
}

function parseIntOpt(what: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${what} ${quote(text)} is not a non-negative integer`);
  return n;
}

export function registerVm(program: Command): Command {
  const vm = program.command("vm").description("VMs on the simulated hypervisor");

  withCommon(vm.command("create <name>"))
    .description("create a VM on a datastore LUN (formatted first if blank): VMDKs (--disk, scsi0:0…) then RDMs (--rdm)")
    .requiredOption("--datastore <lun>", "the datastore LUN (name or id)")
    .option("--disk <size>", "a virtual disk of this size (e.g. 8G); repeat for more", collectOpt)
    .option("--rdm <lun>", "a physical RDM of this array LUN (name or id); repeat for more", collectOpt)
    .action(async (name: string, options: Common & { datastore: string; disk?: string[]; rdm?: string[] }) => {
      const disks: hv1.IDiskSpec[] = [
        ...(options.disk ?? []).map((s) => ({ kind: hv1.DiskKind.VMDK, capacityBytes: parseSize(s) })),
        ...(options.rdm ?? []).map((lun) => ({ kind: hv1.DiskKind.RDM, lun })),
      ];
      if (disks.length === 0) throw new InvalidArgumentError("give at least one --disk or --rdm");
      const v = await using(options, (c) => c.createVm({ name, datastoreLun: options.datastore, disks }));
      process.stdout.write(options.json === true ? `${JSON.stringify(plainVm(v), null, 2)}\n` : vmDetails(v));
    });

  withCommon(vm.command("list"))
    .description("every VM on the hypervisor's datastores")
    .action(async (options: Common) => {
      const r = await using(options, (c) => c.listVms({}));
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(r.vms.map(plainVm), null, 2)}\n`);
        return;
      }
      const rows = r.vms.map((v) => [v.name, v.datastoreLunName, String(v.disks.length), stateName(v.workload), String(v.workload?.acknowledgedSeq ?? 0)]);
      process.stdout.write(formatTable(["NAME", "DATASTORE", "DISKS", "WORKLOAD", "ACKED"], rows));
    });

  withCommon(vm.command("show <name>"))
    .description("a VM's files, disks and workload")
    .action(async (name: string, options: Common) => {
      const v = await using(options, (c) => c.getVm({ name }));
      process.stdout.write(options.json === true ? `${JSON.stringify(plainVm(v), null, 2)}\n` : vmDetails(v));
    });

  withCommon(vm.command("delete <name>"))
    .description("remove the VM directory from its datastore (RDM LUNs are left alone)")
    .option("--force", "stop a running workload first")
    .action(async (name: string, options: Common & { force?: boolean }) => {
      await using(options, (c) => c.deleteVm({ name, force: options.force === true }));
      process.stdout.write(options.json === true ? `${JSON.stringify({ deleted: name })}\n` : `deleted ${name}\n`);
    });

  const statusOut = (options: Common, s: Status): void => {
    process.stdout.write(options.json === true ? `${JSON.stringify(plainStatus(s), null, 2)}\n` : statusLine(s));
  };

  withCommon(vm.command("start <name>"))
    .description("start (or continue) the VM's guest workload")
    .option("--workload <kind>", "the workload: dependent (a dependent-write chain across every disk)", "dependent")
    .option("--rate <ops>", "operations per second (0: as fast as acknowledged)", "0")
    .option("--seed <n>", "workload seed (default: continue the VM's chain, else random)")
    .action(async (name: string, options: Common & { workload: string; rate: string; seed?: string }) => {
      const rate = Number(options.rate);
      if (!Number.isFinite(rate) || rate < 0) throw new InvalidArgumentError(`--rate ${quote(options.rate)} is not a non-negative number`);
      const seed = options.seed !== undefined ? parseIntOpt("--seed", options.seed) : undefined;
      if (seed !== undefined && seed > 0xffff_ffff) throw new InvalidArgumentError(`--seed ${seed} does not fit in 32 bits`);
      statusOut(options, await using(options, (c) => c.startWorkload({ vm: name, workload: options.workload, rate, ...(seed !== undefined ? { seed } : {}) })));
    });

  withCommon(vm.command("stop <name>"))
    .description("stop the workload: the write in flight completes, disks are flushed")
    .action(async (name: string, options: Common) => statusOut(options, await using(options, (c) => c.stopWorkload({ vm: name }))));

  withCommon(vm.command("status <name>"))
    .description("the workload state and its acknowledged sequence number")
    .action(async (name: string, options: Common) => statusOut(options, await using(options, (c) => c.getWorkloadStatus({ vm: name }))));

  withCommon(vm.command("quiesce <name>"))
    .description("hold new guest writes, finish and flush the ones in flight (idempotent); on timeout the VM resumes and this fails")
    .option("--timeout <ms>", "give up (and resume) after this many milliseconds", "10000")
    .action(async (name: string, options: Common & { timeout: string }) => {
      const timeoutMs = parseIntOpt("--timeout", options.timeout);
      statusOut(options, await using(options, (c) => c.quiesceVm({ vm: name, timeoutMs }, { timeoutMs: timeoutMs + 5000 })));
    });

  withCommon(vm.command("resume <name>"))
    .description("release the guest writes held by quiesce (idempotent)")
    .action(async (name: string, options: Common) => statusOut(options, await using(options, (c) => c.resumeVm({ vm: name }))));

  return vm;
}
