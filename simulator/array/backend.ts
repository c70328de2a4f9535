/**
 * The storage seam: what a LUN backend must implement for the array daemon to
 * serve it unchanged (the same ArrayService, masking, CSI services and NBD exports).
 * The local block store (array-store.ts) is the first implementation; Ceph RBD
 * (docs/rbd.md, issue 15) is to be the second.
 *
 * The seam sits *under* the service and the export provider, not under the NBD
 * server: hosts, masking, export records and CBT stream framing stay in the service
 * (control-state.ts), so every backend shares them.
 *
 * Contract, for every implementation:
 *  - Catalogue reads (list/get) are synchronous: a backend keeps its catalogue in
 *    memory and persists it before a mutation returns, so the service's masking and
 *    export listing never wait on storage.
 *  - Mutations are serialised and durable when they resolve. createGroupSnapshot is
 *    atomic across its LUNs: every member holds each write acknowledged before the
 *    cut entirely or not at all (intent → fence → drain → cut → commit → unfence),
 *    and a cut that never committed is gone after a restart.
 *  - CBT (changedExtents, allocatedExtents) may be asynchronous (a backend may ask
 *    its storage); extents are aligned to `capabilities.cbtGranularityBytes`,
 *    sorted, coalesced, within the target's size. A base the backend can no longer
 *    diff from is CbtUnavailableError ("do a full backup"), never a wrong answer.
 *  - openVolume returns the I/O handle the NBD export serves: the local store
 *    returns its Volume itself, so the local data path has no extra layer.
 *  - Errors come from the one catalogue (src/errors.ts): NOT_FOUND, ALREADY_EXISTS,
 *    FAILED_PRECONDITION, NO_SPACE (a full or missing pool, never EIO), …
 */
import type { WriteOptions } from "../../src/block-device.js";
import type { Extent } from "../../src/extents/index.js";
import type { StatusExtent } from "../../src/nbd/backend.js";
import type { ChangedExtent } from "./cbt.js";
import type { VolumeReadPiece, VolumeTarget } from "./volume.js";

export type Awaitable<T> = T | Promise<T>;

export interface LunInfo {
  id: string;
  name: string;
  naa: string;
  size: number;
  blockSize: number;
  /** Bytes of blocks holding data in the live LUN (shared ones included). */
  allocatedBytes: number;
  createdAt: string;
  /** Snapshot id this LUN was cloned from, or null. */
  origin: string | null;
}

export interface SnapshotInfo {
  id: string;
  name: string;
  lunId: string;
  size: number;
  blockSize: number;
  createdAt: string;
  groupId: string | null;
  /** Data bytes visible in the snapshot. */
  allocatedBytes: number;
}

export interface GroupSnapshotInfo {
  id: string;
  name: string;
  createdAt: string;
  members: SnapshotInfo[];
}

export interface PoolInfo {
  capacityBytes: number | null;
  usedBytes: number;
  freeBytes: number | null;
}

/** A CBT answer: extents are block aligned, sorted, coalesced, within `size`. */
export interface ChangedExtentsResult {
  blockSize: number;
  /** Target volume size in bytes. */
  size: number;
  extents: ChangedExtent[];
}

export interface AllocatedExtentsResult {
  blockSize: number;
  size: number;
  extents: Extent[];
}

export type CbtTarget = { snapshot: string } | { lun: string };

/** What GetArrayInfo reports; each backend states its own, honestly. */
export interface BackendCapabilities {
  /** "local" (our block store) or "rbd". */
  kind: string;
  /** Default LUN block size. */
  blockSize: number;
  /** The unit of changedExtents answers (a CBT extent may be this much wider than the write). */
  cbtGranularityBytes: number;
  /** changedExtents still answers after the base snapshot was deleted. */
  cbtFromDeletedBase: boolean;
  /** changedExtents accepts the live LUN as target. */
  cbtLiveTarget: boolean;
  /** 0 = no limit. */
  maxSnapshotsPerLun: number;
}

/** The I/O surface an NBD export needs of one LUN (read-write) or snapshot (read-only). */
export interface LunVolume {
  readonly id: string;
  readonly readOnly: boolean;
  readonly blockSize: number;
  /** Current size in bytes. */
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /** Data pieces and holes; call each data piece's `release` once it has been sent. */
  readSparse(offset: number, length: number): Promise<VolumeReadPiece[]>;
  write(offset: number, data: Uint8Array, opts?: WriteOptions): Promise<void>;
  zero(offset: number, length: number, opts?: WriteOptions): Promise<void>;
  trim(offset: number, length: number, opts?: WriteOptions): Promise<void>;
  /** Every write completed before the call is durable when it resolves. */
  flush(): Promise<void>;
  /** NBD base:allocation for [offset, offset+length) (flag 0 data, HOLE|ZERO zeros). */
  blockStatus(offset: number, length: number): Awaitable<StatusExtent[]>;
}

export interface ArrayBackend {
  readonly capabilities: BackendCapabilities;

  createLun(req: { name: string; size: number; blockSize?: number }): Promise<LunInfo>;
  listLuns(): LunInfo[];
  /** By id or name. */
  getLun(ref: string): LunInfo;
  resizeLun(ref: string, newSize: number): Promise<LunInfo>;
  deleteLun(ref: string): Promise<void>;

  createSnapshot(req: { lun: string; name: string }): Promise<SnapshotInfo>;
  createGroupSnapshot(req: { name: string; luns: string[] }): Promise<GroupSnapshotInfo>;
  listSnapshots(filter?: { lun?: string }): SnapshotInfo[];
  getSnapshot(id: string): SnapshotInfo;
  deleteSnapshot(id: string): Promise<void>;
  getGroupSnapshot(id: string): GroupSnapshotInfo;
  /** Committed group snapshots (the service checks the one snapshot name space against them). */
  listGroupSnapshots(): GroupSnapshotInfo[];
  deleteGroupSnapshot(id: string): Promise<void>;

  revertLun(ref: string, snapshotId: string): Promise<LunInfo>;
  cloneSnapshot(req: { snapshot: string; name: string }): Promise<LunInfo>;

  changedExtents(baseSnapshotId: string, target: CbtTarget): Awaitable<ChangedExtentsResult>;
  allocatedExtents(target: CbtTarget): Awaitable<AllocatedExtentsResult>;

  openVolume(target: VolumeTarget): LunVolume;
  poolInfo(): PoolInfo;
  /** FLUSH for the whole array. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
