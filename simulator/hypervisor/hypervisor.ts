/**
 * The simulated hypervisor: datastores mounted over NBD, the VMs on them, and
 * one VmRuntime (guest workload + quiesce gate) per VM.
 *
 * State: VMs live on their datastores (VMX + descriptors, src/datastore); the
 * hypervisor itself only remembers which datastore LUNs it mounted, in
 * DATA/hypervisor.json, and remounts them when it starts. Workloads do not
 * survive a restart of the hypervisor (VMs come back stopped); they do not
 * survive an array restart either (the operation in flight fails), but the
 * paths reconnect (lun-path.ts), so `vm start` works again without restarting
 * the hypervisor. A VM whose path gave up reports FAILED naming the path.
 *
 * Datastores have one writer: each mount holds the LUN's writer lease
 * (lease-keeper.ts) under this hypervisor's id, which hypervisor.json keeps,
 * so a restarted hypervisor takes its own leases back at once.
 *
 * Guest I/O: a VMDK's writes go through the datastore file system
 * (DatastoreFileDevice on the shared Datastore), an RDM's straight to the RDM
 * LUN's NBD export, which the hypervisor finds by the NAA id in the mapping file.
 */
import { randomBytes } from "node:crypto";
import { readFile, mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { writeFileAtomic } from "../../src/fsio/durable-fs.js";
import { DatastoreFileDevice } from "../../src/datastore/file-device.js";
import { createVm, growVmdk, listVms, readVm, type VmDiskInfo, type VmDiskSpec, type VmInfo } from "../../src/datastore/vm-files.js";
import { AlreadyExistsError, ConnectionClosedError, FailedPreconditionError, InvalidArgumentError, NotFoundError, errorMessage, quote } from "../../src/errors.js";
import type { Logger } from "../../src/log.js";
import { STAMP_SIZE, type DiskTarget, type WorkloadDisk } from "../../src/oracle/index.js";
import type { ArrayLink, LunInfo } from "./array-link.js";
import { MountedDatastore } from "./datastore-mount.js";
import type { LeaseSettings } from "./lease-keeper.js";
import type { LunPath, PathHandle } from "./lun-path.js";
import { VmRuntime, type RuntimeStatus, type VmIo } from "./vm-runtime.js";

export const DEFAULT_QUIESCE_TIMEOUT_MS = 10_000;
/** How far the workload may grow a VMDK beyond its size at start: a quarter, in 64 KiB units. */
const GROW_UNIT = 64 * 1024;

export interface DiskView {
  slot: string;
  kind: "vmdk" | "rdm";
  capacityBytes: number;
  descriptorPath: string;
  flatPath: string;
  rdmNaa: string;
  rdmLunId: string;
  rdmLunName: string;
}

export interface VmView {
  name: string;
  datastoreLunId: string;
  datastoreLunName: string;
  directory: string;
  vmxPath: string;
  disks: DiskView[];
  workload: RuntimeStatus;
}

export type NewDisk = { kind: "vmdk"; capacityBytes: number } | { kind: "rdm"; lun: string };

interface VmEntry {
  name: string;
  mount: MountedDatastore;
  dir: string;
  runtime: VmRuntime;
  /** The RDM paths of the workload's open disks (empty when none is open). */
  rdmPaths: LunPath[];
}

interface StateFile {
  version: 1;
  /** This hypervisor's id on datastore writer leases (32 hex digits); added on first start when missing. */
  hostId?: string;
  datastores: { lunId: string; lunName: string }[];
}

function parseState(text: string, path: string): StateFile {
  const raw: unknown = JSON.parse(text);
  if (typeof raw !== "object" || raw === null) throw new InvalidArgumentError(`${path}: not an object`);
  const hostId: unknown = (raw as Record<string, unknown>)["hostId"];
  if (hostId !== undefined && (typeof hostId !== "string" || !/^[0-9a-f]{32}$/.test(hostId))) throw new InvalidArgumentError(`${path}: "hostId" is not 32 hex digits`);
  const list: unknown = (raw as Record<string, unknown>)["datastores"];
  if (!Array.isArray(list)) throw new InvalidArgumentError(`${path}: "datastores" is not a list`);
  const datastores = list.map((d: unknown) => {
    const o = typeof d === "object" && d !== null ? (d as Record<string, unknown>) : {};
    const lunId = o["lunId"];
    const lunName = o["lunName"];
    if (typeof lunId !== "string" || typeof lunName !== "string") throw new InvalidArgumentError(`${path}: bad datastore entry ${JSON.stringify(d)}`);
    return { lunId, lunName };
  });
  return { version: 1, ...(hostId !== undefined ? { hostId } : {}), datastores };
}

export interface HypervisorOptions {
  /** Datastore writer lease timeout: stale this long after the last heartbeat. */
  leaseTimeoutMs: number;
  /** Wait between writing the lease record and reading it back. */
  leaseSettleMs: number;
}

export class Hypervisor {
  private readonly mounts = new Map<string, MountedDatastore>();
  private readonly vms = new Map<string, VmEntry>();
  /** Serialises inventory changes (mount, create, delete). */
  private inventory: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly link: ArrayLink,
    readonly dataDir: string,
    private readonly log: Logger,
    private readonly lease: LeaseSettings,
  ) {}

  /**
   * Opens the data directory and remounts the datastores it lists (a datastore
   * that fails to mount, e.g. because another hypervisor holds its lease, is
   * logged and skipped).
   */
  static async start(link: ArrayLink, dataDir: string, log: Logger, opts: HypervisorOptions): Promise<Hypervisor> {
    await mkdir(dataDir, { recursive: true });
    const path = join(dataDir, "hypervisor.json");
    const text = await readFile(path, "utf8").catch((e: unknown) => {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    });
    const state: StateFile = text === undefined ? { version: 1, datastores: [] } : parseState(text, path);
    const hostId = state.hostId ?? randomBytes(16).toString("hex");
    const holder = { id: hostId, name: `${hostname()}:${dataDir}`, pid: process.pid };
    const hv = new Hypervisor(link, dataDir, log, { holder, timeoutMs: opts.leaseTimeoutMs, settleMs: opts.leaseSettleMs });
    if (state.hostId === undefined) await writeFileAtomic(path, `${JSON.stringify({ ...state, hostId }, null, 2)}\n`);
    for (const d of state.datastores) {
      try {
        await hv.mount(await link.lun(d.lunId), false);
      } catch (e: unknown) {
        log.warn(`datastore ${d.lunName} (${d.lunId}) not mounted: ${errorMessage(e)}`);
      }
    }
    return hv;
  }

  private get statePath(): string {
    return join(this.dataDir, "hypervisor.json");
  }

  private async saveState(): Promise<void> {
    const state: StateFile = { version: 1, hostId: this.lease.holder.id, datastores: [...this.mounts.values()].map((m) => ({ lunId: m.lunId, lunName: m.lunName })) };
    await writeFileAtomic(this.statePath, `${JSON.stringify(state, null, 2)}\n`);
  }

  /** Mounts a datastore LUN (once) and registers the VMs on it. */
  private async mount(lun: LunInfo, format: boolean): Promise<MountedDatastore> {
    const existing = this.mounts.get(lun.lunId);
    if (existing !== undefined) return existing;
    const m = await MountedDatastore.mount(this.link, lun, this.log, { format, lease: this.lease });
    this.mounts.set(lun.lunId, m);
    const ds = await m.datastore();
    for (const dir of await listVms(ds)) {
      const info = await readVm(ds, dir);
      if (this.vms.has(info.name)) {
        this.log.warn(`VM ${info.name} on datastore ${m.lunName} shadows one of the same name; skipped`);
        continue;
      }
      this.register(info.name, m, info.dir);
    }
    return m;
  }

  private register(name: string, mount: MountedDatastore, dir: string): VmEntry {
    const e: VmEntry = { name, mount, dir, runtime: new VmRuntime(name, this.log, async () => (await mount.datastore()).flush()), rdmPaths: [] };
    this.vms.set(name, e);
    return e;
  }

  private entry(name: string): VmEntry {
    const e = this.vms.get(name);
    if (e === undefined) throw new NotFoundError(`VM ${quote(name)} not found`);
    return e;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.inventory.then(fn);
    this.inventory = p.catch(() => undefined);
    return p;
  }

  async listVms(): Promise<VmView[]> {
    const luns = await this.link.luns();
    const out: VmView[] = [];
    for (const e of [...this.vms.values()].sort((a, b) => a.name.localeCompare(b.name))) out.push(await this.view(e, luns));
    return out;
  }

  async getVm(name: string): Promise<VmView> {
    return this.view(this.entry(name), await this.link.luns());
  }

  private async view(e: VmEntry, luns: readonly LunInfo[]): Promise<VmView> {
    const info = await readVm(await e.mount.datastore(), e.dir);
    return {
      name: e.name,
      datastoreLunId: e.mount.lunId,
      datastoreLunName: e.mount.lunName,
      directory: info.dir,
      vmxPath: info.vmxPath,
      disks: info.disks.map((d) => diskView(d, luns)),
      workload: this.status(e),
    };
  }

  /** Creates a VM; mounts (and, if blank, formats) the datastore LUN first. */
  createVm(name: string, datastoreRef: string, disks: readonly NewDisk[]): Promise<VmView> {
    return this.serial(async () => {
      if (this.vms.has(name)) throw new AlreadyExistsError(`VM ${quote(name)} already exists`);
      if (disks.length === 0) throw new InvalidArgumentError("a VM needs at least one disk");
      const dsLun = await this.link.lun(datastoreRef);
      const specs: VmDiskSpec[] = [];
      for (const [i, d] of disks.entries()) {
        if (d.kind === "vmdk") {
          if (!Number.isSafeInteger(d.capacityBytes) || d.capacityBytes <= 0 || d.capacityBytes % STAMP_SIZE !== 0) {
            throw new InvalidArgumentError(`disk ${i}: capacity ${d.capacityBytes} is not a positive multiple of ${STAMP_SIZE}`);
          }
          specs.push({ kind: "vmdk", capacityBytes: d.capacityBytes });
        } else {
          const lun = await this.link.lun(d.lun);
          if (lun.lunId === dsLun.lunId || this.mounts.has(lun.lunId)) throw new InvalidArgumentError(`disk ${i}: LUN ${lun.name} holds a datastore; it cannot also be an RDM`);
          if (lun.naa === "") throw new FailedPreconditionError(`disk ${i}: LUN ${lun.name} has no NAA id`);
          specs.push({ kind: "rdm", naa: lun.naa, capacityBytes: lun.sizeBytes - (lun.sizeBytes % STAMP_SIZE), lun: lun.name });
        }
      }
      const mount = await this.mount(dsLun, true);
      await this.saveState();
      const info = await createVm(await mount.datastore(), { name, disks: specs });
      const e = this.register(name, mount, info.dir);
      this.log.info(`VM ${name} created on datastore ${mount.lunName}: ${specs.map((s) => (s.kind === "vmdk" ? `vmdk ${s.capacityBytes}` : `rdm ${s.lun ?? s.naa}`)).join(", ")}`);
      return this.view(e, await this.link.luns());
    });
  }

  deleteVm(name: string, force: boolean): Promise<void> {
    return this.serial(async () => {
      const e = this.entry(name);
      if (e.runtime.running) {
        if (!force) throw new FailedPreconditionError(`VM ${quote(name)} runs a workload; stop it first (or force)`);
        e.runtime.resume();
        await e.runtime.stop();
      }
      await (await e.mount.datastore()).delete(e.dir, { recursive: true });
      this.vms.delete(name);
      this.log.info(`VM ${name} deleted`);
    });
  }

  async startWorkload(name: string, opts: { workload: string; seed?: number; rate: number }): Promise<RuntimeStatus> {
    if (opts.workload !== "" && opts.workload !== "dependent") throw new InvalidArgumentError(`unknown workload ${quote(opts.workload)} (known: dependent)`);
    if (!Number.isFinite(opts.rate) || opts.rate < 0) throw new InvalidArgumentError(`rate ${opts.rate} must be >= 0`);
    const e = this.entry(name);
    return e.runtime.start({ ...(opts.seed !== undefined ? { seed: opts.seed } : {}), rate: opts.rate, openIo: () => this.openIo(e) });
  }

  async stopWorkload(name: string): Promise<RuntimeStatus> {
    return this.entry(name).runtime.stop();
  }

  workloadStatus(name: string): RuntimeStatus {
    return this.status(this.entry(name));
  }

  /**
   * The runtime's status, and what a failed path adds: a workload that failed
   * (or cannot run) because a path gave up reports FAILED with the path's error.
   */
  private status(e: VmEntry): RuntimeStatus {
    const s = e.runtime.status();
    if (s.state === "running" || s.state === "stopped") return s;
    const down = [e.mount.path, ...e.rdmPaths].map((p) => p.failure()).find((f) => f !== undefined);
    if (down === undefined) return s;
    return { ...s, error: `${down.code}: ${down.message}${s.error !== "" ? ` (the workload failed with: ${s.error})` : ""}` };
  }

  async quiesce(name: string, timeoutMs: number): Promise<RuntimeStatus> {
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 0) throw new InvalidArgumentError(`timeout ${timeoutMs} ms is not valid`);
    const e = this.entry(name);
    await e.runtime.quiesce(timeoutMs === 0 ? DEFAULT_QUIESCE_TIMEOUT_MS : timeoutMs);
    return e.runtime.status();
  }

  resume(name: string): RuntimeStatus {
    const e = this.entry(name);
    e.runtime.resume();
    return e.runtime.status();
  }

  /** Opens the VM's disks for guest I/O, in VMX order. */
  private async openIo(e: VmEntry): Promise<VmIo> {
    const ds = await e.mount.datastore();
    const info: VmInfo = await readVm(ds, e.dir);
    const disks: WorkloadDisk[] = [];
    const targets: DiskTarget[] = [];
    const rdms: LunPath[] = [];
    const rdmDevices: PathHandle[] = [];
    try {
      for (const d of info.disks) {
        if (d.kind === "flat" && d.flatPath !== undefined) {
          const device = await DatastoreFileDevice.open(ds, d.flatPath);
          let current: VmDiskInfo = d;
          const size = device.size - (device.size % STAMP_SIZE);
          disks.push({ id: d.slot, kind: "vmdk", size, maxSize: size + Math.ceil(size / 4 / GROW_UNIT) * GROW_UNIT });
          targets.push({
            device,
            grow: async (bytes: number) => {
              current = await growVmdk(ds, current, bytes);
              await device.refresh();
            },
          });
        } else if (d.rdm !== undefined) {
          const lun = await this.link.lunByNaa(d.rdm.naa);
          const path = await this.link.openPath(lun.lunId, `VM ${e.name} RDM ${d.slot} ${lun.name} (lun/${lun.name})`);
          rdms.push(path);
          const device = path.handle();
          rdmDevices.push(device);
          const size = Math.min(d.capacity, device.size);
          disks.push({ id: d.slot, kind: "rdm", size: size - (size % STAMP_SIZE) });
          targets.push({ device });
        } else {
          throw new FailedPreconditionError(`${d.descriptorPath}: neither a flat extent nor an RDM mapping`);
        }
      }
    } catch (err: unknown) {
      await Promise.allSettled(rdms.map((r) => r.close()));
      throw err;
    }
    e.rdmPaths = rdms;
    const paths = [e.mount.path, ...rdms];
    const faultsAtOpen = paths.map((p) => p.faults);
    return {
      disks,
      targets,
      fault: () => {
        const i = paths.findIndex((p, k) => p.faults !== faultsAtOpen[k]);
        const p = paths[i];
        if (p === undefined) return undefined;
        return p.failure() ?? new ConnectionClosedError(`${p.name} faulted since the VM's disks were opened (${p.status().lastError || "a write timed out"}); acknowledged writes may be lost`);
      },
      flush: async () => {
        await ds.flush();
        await Promise.all(rdmDevices.map((r) => r.flush()));
      },
      close: async () => {
        await Promise.allSettled(rdms.map((r) => r.close()));
        if (e.rdmPaths === rdms) e.rdmPaths = [];
      },
    };
  }

  /** Stops every workload (flushing), then unmounts every datastore. */
  async close(): Promise<void> {
    for (const e of this.vms.values()) {
      e.runtime.resume();
      await e.runtime.stop().catch((err: unknown) => this.log.warn(`VM ${e.name}: stop failed: ${errorMessage(err)}`));
    }
    for (const m of this.mounts.values()) await m.unmount().catch((err: unknown) => this.log.warn(`datastore ${m.lunName}: unmount failed: ${errorMessage(err)}`));
    this.mounts.clear();
    this.vms.clear();
  }
}

function diskView(d: VmDiskInfo, luns: readonly LunInfo[]): DiskView {
  const naa = d.rdm?.naa ?? "";
  const lun = naa === "" ? undefined : luns.find((l) => l.naa.toLowerCase() === naa.toLowerCase());
  return {
    slot: d.slot,
    kind: d.kind === "flat" ? "vmdk" : "rdm",
    capacityBytes: d.capacity,
    descriptorPath: d.descriptorPath,
    flatPath: d.flatPath ?? "",
    rdmNaa: naa,
    rdmLunId: lun?.lunId ?? "",
    rdmLunName: lun?.name ?? "",
  };
}
