/**
 * Catalogue records of the block store (persisted in LMDB's `cat` database,
 * mirrored in memory because there are few of them: thousands, not millions).
 *
 * A *line* is one linear history of block mappings (a LUN's own timeline).
 * Epochs number the intervals between snapshots on a line: the live LUN writes at
 * `line.epoch`; a snapshot freezes `epoch = line.epoch` and the line moves to
 * `epoch + 1`. A clone is a new line whose `parent` is (origin line, snapshot epoch):
 * reads fall through to the parent for blocks the clone never wrote.
 */
export interface LineRecord {
  id: number;
  blockSize: number;
  /** Where unwritten blocks of this line read from, if it is a clone. */
  parent: { line: number; epoch: number; snapshotId: string } | null;
  /** The live epoch: writes land here. Epochs start at 1; 0 means "before anything". */
  epoch: number;
  /** The LUN that owns this line, or null once the LUN is deleted (line kept for clones). */
  lunId: string | null;
}

export interface LunRecord {
  id: string;
  name: string;
  naa: string;
  line: number;
  size: number;
  blockSize: number;
  createdAt: string;
  /** Blocks whose live content is data (not zero/hole), including blocks shared with a clone origin. */
  allocBlocks: number;
  /** Snapshot this LUN was cloned from, if any. */
  origin: string | null;
}

export type SnapshotState = "ready" | "deleted";

export interface SnapshotRecord {
  id: string;
  name: string;
  lunId: string;
  line: number;
  epoch: number;
  size: number;
  blockSize: number;
  createdAt: string;
  groupId: string | null;
  /**
   * "deleted": the user deleted the snapshot but clones still pin its blocks
   * (`clones > 0`); the record goes with the last clone. A deleted snapshot whose id
   * predates snapshot-ids.ts keeps its record for good (a tombstone), as its id alone
   * cannot answer CBT.
   */
  state: SnapshotState;
  clones: number;
  allocBlocks: number;
}

export interface GroupRecord {
  id: string;
  name: string;
  lunIds: string[];
  snapshotIds: string[];
  /** RBD-style intent record: "incomplete" ones are removed on open (crash mid-cut). */
  state: "incomplete" | "complete";
  createdAt: string;
}

export interface Counters {
  nextLine: number;
  /** Key of snapshot-id tags (snapshot-ids.ts); absent in catalogues from before it, added on open. */
  idKey?: string;
}
