/**
 * What a check sees while it runs: the array client and its claimed
 * capabilities, the run's configuration, the area's resource tracker, and small
 * helpers that create tracked resources (LUNs, snapshots, exports, NBD
 * connections) so checks stay short.
 */
import { randomBytes } from "node:crypto";
import { InvalidArgumentError } from "../../src/errors.js";
import { NbdClient, type ClientOptions } from "../../src/nbd/client.js";
import type { ArrayClient } from "../../src/rpc/array-client.js";
import type { Decoded } from "../../src/rpc/service.js";
import type { v1 } from "../../src/rpc/proto.js";
import { CheckScope } from "./scope.js";
import type { ResourceTracker } from "./tracker.js";

/** The capabilities of ArrayInfo a check can depend on. */
export type Capability = "groupSnapshots" | "cbt" | "revert" | "clone" | "resize" | "cbtFromDeletedBase" | "cbtLiveTarget" | "nbdDirtyBitmaps" | "lunMasking";

export type ArrayInfo = Decoded<v1.IArrayInfo>;
export type Lun = Decoded<v1.ILun>;
export type Snapshot = Decoded<v1.ISnapshot>;
export type SnapshotReply = Decoded<v1.ICreateSnapshotResponse>;
export type Export = Decoded<v1.IExport>;

export interface ConformanceConfig {
  /** The ArrayService endpoint (unix:PATH, HOST:PORT, tls:HOST:PORT); absent in --nbd-only mode. */
  endpoint?: string;
  token?: string;
  /** PEM CA for tls: endpoints. */
  ca?: Buffer;
  /** Run only the NBD data-path checks against this URI (any NBD server). */
  nbdOnlyUri?: string;
  /** How often idempotent calls are repeated (csi-sanity's IdempotentCount); default 3. */
  idempotentCount: number;
  /** Run only checks whose id matches (a regular expression, or a plain substring). */
  only?: string;
  /** Progress lines (to stderr in the CLI). */
  log?: (line: string) => void;
}

/** Per-area state of one run: the tracker and the fixtures built so far. */
export interface AreaRun {
  readonly tracker: ResourceTracker;
  readonly fixtures: Map<symbol, Promise<unknown>>;
  readonly array: ArrayClient | undefined;
  readonly info: ArrayInfo | undefined;
  readonly config: ConformanceConfig;
  readonly prefix: string;
  counter: number;
}

export function claims(info: ArrayInfo, cap: Capability): boolean {
  const c = info.capabilities;
  if (c === undefined) return false;
  switch (cap) {
    case "cbt":
      return c.cbtGranularityBytes > 0;
    case "groupSnapshots":
      return c.groupSnapshots;
    case "revert":
      return c.revert;
    case "clone":
      return c.clone;
    case "resize":
      return c.resize;
    case "cbtFromDeletedBase":
      return c.cbtFromDeletedBase;
    case "cbtLiveTarget":
      return c.cbtLiveTarget;
    case "nbdDirtyBitmaps":
      return c.nbdDirtyBitmaps;
    case "lunMasking":
      return c.lunMasking;
  }
}

export function runPrefix(): string {
  return `cf${randomBytes(3).toString("hex")}`;
}

export class CheckContext extends CheckScope {
  constructor(private readonly run: AreaRun) {
    super(run);
  }

  get config(): ConformanceConfig {
    return this.run.config;
  }
  get track(): ResourceTracker {
    return this.run.tracker;
  }
  get hasArray(): boolean {
    return this.run.array !== undefined;
  }
  get array(): ArrayClient {
    if (this.run.array === undefined) throw new InvalidArgumentError("this check needs an ArrayService endpoint (not available in --nbd-only mode)");
    return this.run.array;
  }
  get info(): ArrayInfo {
    if (this.run.info === undefined) throw new InvalidArgumentError("no ArrayInfo in --nbd-only mode");
    return this.run.info;
  }
  get blockSize(): number {
    const bs = this.info.blockSizeBytes;
    return bs > 0 ? bs : 4096;
  }
  claims(cap: Capability): boolean {
    return claims(this.info, cap);
  }

  // ---------------------------------------------------------------- tracked resources

  async createLun(hint: string, sizeBytes: number): Promise<Lun> {
    const lun = await this.array.createLun({ name: this.name(hint), sizeBytes });
    this.track.lun(lun.lunId);
    return lun;
  }

  async snapshot(lunIds: readonly string[], hint = "snap"): Promise<SnapshotReply> {
    return this.array.createSnapshot({ name: this.name(hint), lunIds: [...lunIds] });
  }

  async snapshotOne(lunId: string, hint = "snap"): Promise<Snapshot> {
    const r = await this.snapshot([lunId], hint);
    const s = r.snapshots[0];
    if (s === undefined) throw new InvalidArgumentError("CreateSnapshot returned no snapshot");
    return s;
  }

  /** A local export (no host) of a LUN or a snapshot; removed by the LUN sweep. */
  async exportOf(target: { lunId: string } | { snapshotId: string }, hostId = ""): Promise<Export> {
    return this.array.createExport({ ...target, hostId });
  }

  /** Opens an NBD connection that the tracker closes. */
  async nbd(uri: string, opts: ClientOptions = {}): Promise<NbdClient> {
    return this.track.client(await NbdClient.connect(uri, { connectTimeoutMs: 10_000, ...opts }));
  }

  /** Export + connect in one step. */
  async open(target: { lunId: string } | { snapshotId: string }, opts: ClientOptions = {}): Promise<NbdClient> {
    const e = await this.exportOf(target);
    return this.nbd(e.uri, opts);
  }
}
