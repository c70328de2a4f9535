/**
 * What a CSI conformance check sees: the four CSI clients of one endpoint, the
 * secrets map sent on every call that takes one, the run's tracker, and — only
 * when the same endpoint also serves sanbox.array.v1.ArrayService — the array
 * client that gives the data checks their NBD access (CreateExport of a volume
 * id or a snapshot id; the CSI mapping makes them LUN and snapshot ids).
 *
 * Everything a check creates goes through the helpers here, so the tracker can
 * delete it again (volumes named `<run-prefix>-…`).
 */
import { InvalidArgumentError } from "../../../src/errors.js";
import { NbdClient } from "../../../src/nbd/client.js";
import type { ArrayClient } from "../../../src/rpc/array-client.js";
import type { csi } from "../../../src/rpc/csi-proto.js";
import type { CsiClients } from "../../../src/rpc/csi-service-defs.js";
import type { Decoded } from "../../../src/rpc/service.js";
import { SkipCheck } from "../assert.js";
import { CheckScope } from "../scope.js";
import type { CsiTracker } from "./tracker.js";

export type CsiVolume = Decoded<csi.IVolume>;
export type CsiSnapshot = Decoded<csi.ISnapshot>;
export type CsiGroupSnapshot = Decoded<csi.IVolumeGroupSnapshot>;

export interface CsiConformanceConfig {
  /** The CSI endpoint: unix:PATH, HOST:PORT or tls:HOST:PORT. */
  endpoint: string;
  /** The CSI `secrets` map, sent on every request that has the field. */
  secrets: Record<string, string>;
  /** Bearer token (sanbox's array wants one; a plain CSI driver does not). */
  token?: string;
  ca?: Buffer;
  idempotentCount: number;
  only?: string;
  log?: (line: string) => void;
}

export interface CsiRun {
  readonly csi: CsiClients;
  /** The ArrayService client when the endpoint serves it, for data access. */
  readonly array: ArrayClient | undefined;
  /** Why there is no data access (when `array` is undefined). */
  readonly noDataReason: string;
  readonly tracker: CsiTracker;
  readonly fixtures: Map<symbol, Promise<unknown>>;
  readonly config: CsiConformanceConfig;
  readonly prefix: string;
  counter: number;
}

export class CsiContext extends CheckScope {
  constructor(private readonly run: CsiRun) {
    super(run);
  }

  get csi(): CsiClients {
    return this.run.csi;
  }
  get secrets(): Record<string, string> {
    return this.run.config.secrets;
  }
  get hasData(): boolean {
    return this.run.array !== undefined;
  }
  /** The ArrayService client; skips the check (not applicable) when the endpoint has none. */
  get array(): ArrayClient {
    if (this.run.array === undefined) throw new SkipCheck(`not applicable: ${this.run.noDataReason}`);
    return this.run.array;
  }

  // ---------------------------------------------------------------- tracked resources

  async createVolume(hint: string, bytes: number): Promise<CsiVolume> {
    const r = await this.csi.controller.createVolume({
      name: this.name(hint),
      capacityRange: { requiredBytes: bytes },
      volumeCapabilities: [{ block: {}, accessMode: { mode: 1 } }],
      secrets: this.secrets,
    });
    const v = r.volume;
    if (v === undefined || v.volumeId === "") throw new InvalidArgumentError("CreateVolume answered without a volume");
    this.run.tracker.volume(v.volumeId);
    return v;
  }

  async snapshot(volumeId: string, hint = "snap"): Promise<CsiSnapshot> {
    const r = await this.csi.controller.createSnapshot({ sourceVolumeId: volumeId, name: this.name(hint), secrets: this.secrets });
    if (r.snapshot === undefined || r.snapshot.snapshotId === "") throw new InvalidArgumentError("CreateSnapshot answered without a snapshot");
    return r.snapshot;
  }

  async groupSnapshot(name: string, volumeIds: readonly string[]): Promise<CsiGroupSnapshot> {
    const r = await this.csi.groupController.createVolumeGroupSnapshot({ name, sourceVolumeIds: [...volumeIds], secrets: this.secrets });
    if (r.groupSnapshot === undefined) throw new InvalidArgumentError("CreateVolumeGroupSnapshot answered without group_snapshot");
    return r.groupSnapshot;
  }

  /** An NBD connection to a volume (read-write) or a snapshot, through the ArrayService's CreateExport. */
  async open(target: { lunId: string } | { snapshotId: string }): Promise<NbdClient> {
    const e = await this.array.createExport({ ...target, hostId: "" });
    this.run.tracker.export(e.exportId);
    return this.run.tracker.client(await NbdClient.connect(e.uri, { connectTimeoutMs: 10_000 }));
  }
}
