/**
 * LMDB layout of the block store's metadata (one env, four named databases).
 *
 *  cat   ["lun"|"snap"|"line"|"group", id] -> record; ["ctr", 0] -> Counters
 *  maps  [line, block, epoch] -> slot     mapping versions; slot 0 = zero/trimmed
 *  wset  [line, epoch, block] -> slot     the same entries by epoch: per-epoch write
 *                                         sets (dm-era), what makes CBT O(changes)
 *  refs  [blockSize, slot] -> count       only for slots referenced more than once
 *
 * `maps` and `wset` always hold exactly the same (line, block, epoch) entries;
 * the checker verifies it. LMDB runs with noSync and without lmdb-js's
 * overlappingSync (so a commit is a plain LMDB commit, ~15 us): every commit is
 * atomic and in the page cache, so it survives kill -9; `sync()` makes everything
 * durable and is called on FLUSH, FUA and after every management operation.
 */
import { open, type Database, type RootDatabase } from "lmdb";
import { join } from "node:path";

export type MapKey = [line: number, block: number, epoch: number];
export type WsetKey = [line: number, epoch: number, block: number];
export type RefKey = [blockSize: number, slot: number];
export type CatKey = (string | number)[];

export class MetaDb {
  readonly root: RootDatabase<unknown, CatKey>;
  readonly cat: Database<unknown, CatKey>;
  readonly maps: Database<number, MapKey>;
  readonly wset: Database<number, WsetKey>;
  readonly refs: Database<number, RefKey>;

  private constructor(root: RootDatabase<unknown, CatKey>) {
    this.root = root;
    this.cat = root.openDB<unknown, CatKey>("cat", {});
    this.maps = root.openDB<number, MapKey>("maps", {});
    this.wset = root.openDB<number, WsetKey>("wset", {});
    this.refs = root.openDB<number, RefKey>("refs", {});
  }

  static open(dir: string): MetaDb {
    return new MetaDb(open<unknown, CatKey>({ path: join(dir, "meta.lmdb"), noSync: true, overlappingSync: false, mapSize: 2 ** 38 }));
  }

  /** Runs `fn` in one atomic LMDB write transaction. */
  txn<T>(fn: () => T): T {
    return this.root.transactionSync(fn);
  }

  /** fsync the environment (mdb_env_sync(force)). */
  sync(): Promise<void> {
    const root = this.root as unknown as { sync(cb: (e: unknown) => void): void };
    return new Promise((resolve, reject) => {
      root.sync((e) => (e ? reject(e instanceof Error ? e : new Error(`LMDB sync failed: ${JSON.stringify(e)}`)) : resolve()));
    });
  }

  /** The newest mapping of `block` on `line` with epoch in (minEpoch, maxEpoch]. */
  latest(line: number, block: number, maxEpoch: number, minEpoch = 0): { epoch: number; slot: number } | undefined {
    for (const { key, value } of this.maps.getRange({ start: [line, block, maxEpoch], end: [line, block, minEpoch], reverse: true, limit: 1 })) {
      return { epoch: key[2], slot: value };
    }
    return undefined;
  }

  /**
   * Batched `latest` over the blocks [b0, b1) of `line`: one range scan instead of
   * one LMDB cursor per block. For each bound in `maxEpochs`, result[k][b - b0] is
   * the newest entry of block b with epoch <= maxEpochs[k] (undefined if none).
   * Returns null when the range holds more than `cap` entries (long per-block
   * histories): callers then fall back to per-block `latest`, so a dense history
   * never costs more than about twice the per-block path.
   */
  latestRange(line: number, b0: number, b1: number, maxEpochs: readonly number[], cap: number): ({ epoch: number; slot: number } | undefined)[][] | null {
    const n = b1 - b0;
    const out: ({ epoch: number; slot: number } | undefined)[][] = maxEpochs.map(() => new Array<{ epoch: number; slot: number } | undefined>(n).fill(undefined));
    let count = 0;
    for (const { key, value } of this.maps.getRange({ start: [line, b0], end: [line, b1], limit: cap + 1 })) {
      if (++count > cap) return null;
      const i = key[1] - b0;
      const epoch = key[2];
      // Entries of one block come in ascending epoch order: the last match wins.
      for (let k = 0; k < maxEpochs.length; k++) {
        const row = out[k];
        if (row !== undefined && epoch <= (maxEpochs[k] as number)) row[i] = { epoch, slot: value };
      }
    }
    return out;
  }

  putEntry(line: number, block: number, epoch: number, slot: number): void {
    this.maps.putSync([line, block, epoch], slot);
    this.wset.putSync([line, epoch, block], slot);
  }

  removeEntry(line: number, block: number, epoch: number): void {
    this.maps.removeSync([line, block, epoch]);
    this.wset.removeSync([line, epoch, block]);
  }

  /** Entries of `line` whose epoch is in (fromEpoch, toEpoch], in epoch order. */
  *writeSet(line: number, fromEpoch: number, toEpoch: number): Generator<{ block: number; epoch: number; slot: number }> {
    for (const { key, value } of this.wset.getRange({ start: [line, fromEpoch + 1], end: [line, toEpoch + 1] })) {
      yield { block: key[2], epoch: key[1], slot: value };
    }
  }

  /** Entries of `line` for blocks in [b0, b1), in block order (all epochs). */
  *blockRange(line: number, b0: number, b1: number): Generator<{ block: number; epoch: number; slot: number }> {
    for (const { key, value } of this.maps.getRange({ start: [line, b0], end: [line, b1] })) {
      yield { block: key[1], epoch: key[2], slot: value };
    }
  }

  refCount(blockSize: number, slot: number): number {
    return this.refs.get([blockSize, slot]) ?? 1;
  }
  setRefCount(blockSize: number, slot: number, n: number): void {
    if (n > 1) this.refs.putSync([blockSize, slot], n);
    else this.refs.removeSync([blockSize, slot]);
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}
