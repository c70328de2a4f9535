/**
 * The array driver: the one small interface through which the backup plugin
 * reaches a storage array (DESIGN.md, "How a vendor integrates", door 2). The
 * gRPC ArrayService client is only the default implementation
 * (grpc-array-driver.ts); a vendor whose array has its own REST API implements
 * these twelve methods and the plugin, its tests and its oracle work unchanged.
 *
 * What the plugin needs, and nothing more:
 *
 *   facts()                  block size, group snapshots, CBT granularity
 *   findLun({id|name|naa})   LUN lookup; an RDM mapping names its LUN by NAA id
 *   createLun(name, size)    restore to a new LUN
 *   deleteLun(id)            an interrupted or failed restore removes the LUN it made
 *   createSnapshot(name, luns)  one LUN: a snapshot; several: an atomic,
 *                            write-order consistent group snapshot (or fail)
 *   deleteSnapshot(set)      a snapshot, or a group with all its members
 *   listSnapshots(lunId)     to find snapshots a crashed run left behind
 *   changedExtents(base, target)  CBT, ascending DATA/ZERO extents; throws
 *                            CbtUnavailableError when the array cannot answer
 *                            (the caller then reads everything)
 *   allocatedExtents(snap)   extents holding data (the rest reads as zeros)
 *   exportSnapshot(snap) / exportLun(lun) → { id, uri }: an NBD URI to read
 *                            (or, for a LUN, write) over NBD
 *   deleteExport(id), close()
 *
 * Semantics follow docs/contract.md. Errors are SanboxErrors from src/errors.ts;
 * transient ones (UNAVAILABLE, TIMEOUT, CONNECTION_CLOSED) may be retried.
 */
import type { TypedExtent } from "../../src/rpc/block-stream.js";

export interface ArrayFacts {
  vendor: string;
  blockSize: number;
  groupSnapshots: boolean;
  /** 0: no CBT; every backup reads allocated extents in full. */
  cbtGranularity: number;
}

export interface LunInfo {
  id: string;
  name: string;
  naa: string;
  size: number;
}

export interface SnapshotInfo {
  id: string;
  name: string;
  lunId: string;
  lunName: string;
  size: number;
  /** "" unless a member of a group snapshot. */
  groupId: string;
}

/** What one createSnapshot call made: one snapshot, or one group with a member per LUN (in request order). */
export interface SnapshotSet {
  name: string;
  /** "" for a single-LUN snapshot. */
  groupId: string;
  members: SnapshotInfo[];
}

export interface ExportHandle {
  id: string;
  uri: string;
}

export type { TypedExtent };

export interface ArrayDriver {
  facts(): Promise<ArrayFacts>;
  findLun(ref: { id?: string; name?: string; naa?: string }): Promise<LunInfo>;
  createLun(name: string, sizeBytes: number): Promise<LunInfo>;
  /** Deletes a LUN with no snapshots, mappings or exports left; a LUN that is gone already is success (contract: idempotent). */
  deleteLun(lunId: string): Promise<void>;
  createSnapshot(name: string, lunIds: readonly string[]): Promise<SnapshotSet>;
  deleteSnapshot(set: { groupId: string; members: readonly { id: string }[] }): Promise<void>;
  listSnapshots(lunId: string): Promise<SnapshotInfo[]>;
  changedExtents(baseSnapshotId: string, targetSnapshotId: string): AsyncIterable<TypedExtent>;
  allocatedExtents(snapshotId: string): AsyncIterable<TypedExtent>;
  exportSnapshot(snapshotId: string): Promise<ExportHandle>;
  exportLun(lunId: string): Promise<ExportHandle>;
  deleteExport(exportId: string): Promise<void>;
  close(): void;
}
