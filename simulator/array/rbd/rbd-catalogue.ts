/**
 * The RBD backend's catalogue: which RBD image is which LUN, which RBD snapshot
 * is which array snapshot, and the group snapshots (with their intent records).
 * Kept in DATA/rbd-catalogue.json beside control.json (hosts, masking, exports),
 * so a restart of `array serve --backend rbd` with the same data directory finds
 * both; the images and snapshots themselves live in the pool.
 *
 * Written atomically (temp, fsync, rename, fsync the directory) before a
 * mutation returns. A group record in state "incomplete" is an intent whose cut
 * never committed: the next open removes its member snapshots.
 */
import { dirname, join } from "node:path";
import { CorruptError } from "../../../src/errors.js";
import { readFileIfExists, writeFileAtomic } from "../../../src/fsio/durable-fs.js";

export interface RbdLunRecord {
  id: string;
  name: string;
  naa: string;
  image: string;
  size: number;
  /** The image's object size: allocation and CBT unit. */
  blockSize: number;
  createdAt: string;
  origin: string | null;
  /**
   * Deleted from the array's view while clones still depend on one of its
   * (deleted) snapshots: RBD cannot remove a parent image, so it stays until
   * the last such clone is gone (rbd-backend.ts reapParents). Absent = live.
   */
  hidden?: true;
}

export interface RbdSnapRecord {
  id: string;
  name: string;
  lunId: string;
  image: string;
  /** The RBD snapshot name on `image`. */
  snap: string;
  size: number;
  blockSize: number;
  createdAt: string;
  groupId: string | null;
  protected: boolean;
  /** "deleted": gone from the array's view, kept in RBD while clones depend on it. */
  state: "ready" | "deleted";
}

export interface RbdGroupRecord {
  id: string;
  name: string;
  createdAt: string;
  lunIds: string[];
  snapshotIds: string[];
  state: "incomplete" | "complete";
}

export interface RbdCatalogueData {
  version: 1;
  pool: string;
  luns: RbdLunRecord[];
  snaps: RbdSnapRecord[];
  groups: RbdGroupRecord[];
}

export class RbdCatalogue {
  private constructor(
    readonly path: string,
    public data: RbdCatalogueData,
  ) {}

  static async open(dir: string, pool: string): Promise<RbdCatalogue> {
    const path = join(dir, "rbd-catalogue.json");
    const text = await readFileIfExists(path);
    if (text === undefined) {
      const c = new RbdCatalogue(path, { version: 1, pool, luns: [], snaps: [], groups: [] });
      await c.save();
      return c;
    }
    const v = JSON.parse(text) as unknown;
    if (typeof v !== "object" || v === null || (v as { version?: unknown }).version !== 1) throw new CorruptError(`${path}: not an RBD catalogue (version 1)`);
    const data = v as RbdCatalogueData;
    if (data.pool !== pool) throw new CorruptError(`${path} belongs to pool "${data.pool}", not "${pool}"`);
    return new RbdCatalogue(path, data);
  }

  save(): Promise<void> {
    return writeFileAtomic(this.path, `${JSON.stringify(this.data, null, 1)}\n`, dirname(this.path), 0o600);
  }
}
