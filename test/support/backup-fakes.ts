/**
 * In-memory stand-ins for the two daemons a backup run talks to, for unit
 * tests of its phases: an ArrayDriver that keeps snapshots and exports in
 * lists, and a hypervisor port that tracks one VM's quiesce state. Every call
 * is logged in order (`calls`), and any method can be made to fail (`failOn`),
 * so a test can say which step broke and check what cleanup did after it.
 * Nothing here reads data: phases that read over NBD are tested end to end.
 */
import { CbtUnavailableError, NotFoundError, UnsupportedError } from "../../src/errors.js";
import type { Logger } from "../../src/log.js";
import type { Decoded } from "../../src/rpc/service.js";
import { hv1 } from "../../src/rpc/hypervisor-proto.js";
import type { ArrayDriver, ArrayFacts, ExportHandle, LunInfo, SnapshotInfo, SnapshotSet, TypedExtent } from "../../plugin/backup/array-driver.js";
import type { HypervisorPort } from "../../plugin/backup/backup-run.js";

export class FakeArray implements ArrayDriver {
  readonly calls: string[] = [];
  readonly snapshots: SnapshotInfo[] = [];
  readonly exports = new Map<string, string>();
  /** Method name → the error its next calls throw. */
  readonly failOn = new Map<keyof ArrayDriver, Error>();
  private serial = 0;

  constructor(readonly luns: LunInfo[]) {}

  private enter(method: keyof ArrayDriver, what: string): void {
    this.calls.push(`${method} ${what}`.trim());
    const error = this.failOn.get(method);
    if (error !== undefined) throw error;
  }

  async facts(): Promise<ArrayFacts> {
    return { vendor: "fake", blockSize: 4096, groupSnapshots: true, cbtGranularity: 4096 };
  }

  async findLun(ref: { id?: string; name?: string; naa?: string }): Promise<LunInfo> {
    this.enter("findLun", ref.id ?? ref.name ?? ref.naa ?? "");
    const lun = this.luns.find((l) => l.id === ref.id || l.name === ref.name || l.naa === ref.naa);
    if (lun === undefined) throw new NotFoundError(`no LUN ${JSON.stringify(ref)}`);
    return lun;
  }

  async createLun(): Promise<LunInfo> {
    throw new UnsupportedError("the fake array makes no LUNs");
  }

  async deleteLun(lunId: string): Promise<void> {
    this.enter("deleteLun", lunId);
    const i = this.luns.findIndex((l) => l.id === lunId);
    if (i >= 0) this.luns.splice(i, 1);
  }

  async createSnapshot(name: string, lunIds: readonly string[]): Promise<SnapshotSet> {
    this.enter("createSnapshot", name);
    const groupId = lunIds.length > 1 ? `group-${++this.serial}` : "";
    const members = lunIds.map((lunId): SnapshotInfo => {
      const lun = this.luns.find((l) => l.id === lunId);
      if (lun === undefined) throw new NotFoundError(`no LUN ${lunId}`);
      return { id: `snap-${++this.serial}`, name: groupId !== "" ? `${name}@${lun.name}` : name, lunId, lunName: lun.name, size: lun.size, groupId };
    });
    this.snapshots.push(...members);
    return { name, groupId, members };
  }

  /** A snapshot made outside this run (a leak of a killed run, another repository's base). */
  addSnapshot(name: string, lunIds: readonly string[]): Promise<SnapshotSet> {
    return this.createSnapshot(name, lunIds);
  }

  async deleteSnapshot(set: { groupId: string; members: readonly { id: string }[] }): Promise<void> {
    this.enter("deleteSnapshot", set.members.map((m) => m.id).join(","));
    const ids = new Set(set.members.map((m) => m.id));
    if (!this.snapshots.some((s) => ids.has(s.id))) throw new NotFoundError("no such snapshot");
    for (let i = this.snapshots.length - 1; i >= 0; i--) if (ids.has(this.snapshots[i]?.id ?? "")) this.snapshots.splice(i, 1);
  }

  async listSnapshots(lunId: string): Promise<SnapshotInfo[]> {
    this.enter("listSnapshots", lunId);
    return this.snapshots.filter((s) => s.lunId === lunId);
  }

  async *changedExtents(): AsyncIterable<TypedExtent> {
    throw new CbtUnavailableError("the fake array has no CBT");
  }

  async *allocatedExtents(): AsyncIterable<TypedExtent> {
    throw new UnsupportedError("the fake array holds no data");
  }

  async exportSnapshot(snapshotId: string): Promise<ExportHandle> {
    this.enter("exportSnapshot", snapshotId);
    const id = `export-${++this.serial}`;
    this.exports.set(id, snapshotId);
    return { id, uri: `nbd+unix:///snap/${snapshotId}?socket=/nonexistent` };
  }

  async exportLun(): Promise<ExportHandle> {
    throw new UnsupportedError("the fake array exports no LUNs");
  }

  async deleteExport(exportId: string): Promise<void> {
    this.enter("deleteExport", exportId);
    if (!this.exports.delete(exportId)) throw new NotFoundError(`no export ${exportId}`);
  }

  close(): void {}
}

export function workloadStatus(vm: string, quiesced: boolean): Decoded<hv1.IWorkloadStatus> {
  return { vm, state: hv1.WorkloadState.RUNNING, workload: "dependent", seed: 0, rate: 0, acknowledgedSeq: 0, quiesced, error: "", writes: 0, trims: 0, grows: 0 };
}

export interface FakeDisk {
  slot: string;
  name: string;
  /** VMDK: its flat file; RDM: the LUN's NAA id. */
  flatPath?: string;
  naa?: string;
}

export class FakeHypervisor implements HypervisorPort {
  readonly calls: string[] = [];
  quiesced = false;
  /** The next resumes that fail, and with what. */
  readonly failResume: Error[] = [];
  /** Method name → the error its calls throw. */
  readonly failOn = new Map<keyof HypervisorPort, Error>();

  constructor(
    readonly vm: string,
    readonly datastoreLunId: string,
    readonly disks: FakeDisk[],
  ) {}

  private enter(method: keyof HypervisorPort): void {
    this.calls.push(method);
    const error = this.failOn.get(method);
    if (error !== undefined) throw error;
  }

  async getVm(): Promise<Decoded<hv1.IVm>> {
    this.enter("getVm");
    return {
      name: this.vm,
      datastoreLunId: this.datastoreLunId,
      datastoreLunName: "datastore",
      directory: `/${this.vm}`,
      vmxPath: `/${this.vm}/${this.vm}.vmx`,
      disks: this.disks.map((d) => ({
        slot: d.slot,
        kind: d.naa !== undefined ? hv1.DiskKind.RDM : hv1.DiskKind.VMDK,
        capacityBytes: 0,
        descriptorPath: `/${this.vm}/${d.name}.vmdk`,
        flatPath: d.flatPath ?? "",
        rdmNaa: d.naa ?? "",
        rdmLunId: "",
        rdmLunName: "",
      })),
      workload: workloadStatus(this.vm, this.quiesced),
    };
  }

  async quiesceVm(): Promise<Decoded<hv1.IWorkloadStatus>> {
    this.enter("quiesceVm");
    this.quiesced = true;
    return workloadStatus(this.vm, true);
  }

  async resumeVm(): Promise<Decoded<hv1.IWorkloadStatus>> {
    this.enter("resumeVm");
    const error = this.failResume.shift();
    if (error !== undefined) throw error;
    this.quiesced = false;
    return workloadStatus(this.vm, false);
  }
}

/** A logger that keeps what it was told, to check a warning was given. */
export function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const logger: Logger & { lines: string[] } = {
    lines,
    error: (msg) => lines.push(`error ${msg}`),
    warn: (msg) => lines.push(`warn ${msg}`),
    info: (msg) => lines.push(`info ${msg}`),
    debug: (msg) => lines.push(`debug ${msg}`),
    child: () => logger,
  };
  return logger;
}
