/**
 * Prune's garbage collection over packs (restic's prune, simplified):
 *
 *  - a pack none of whose chunks is live (referenced by a point's map through
 *    the index) is deleted;
 *  - a pack whose live chunks take less than REWRITE_BELOW of its blob bytes
 *    is rewritten: its live chunks are read (verified) and appended into new
 *    packs, then it is deleted;
 *  - the index is compacted into one file listing only live locations;
 *  - `.partial` packs (left by a killed run) and damaged markers of deleted
 *    packs are removed.
 *
 * Order, so that a crash at any step leaves a repository whose index points
 * only at packs that exist: new packs are sealed and indexed (store.sync)
 * → the compacted index replaces the old files → old packs are deleted. The
 * caller holds the maintenance lock, so no backup is appending meanwhile.
 */
import { rm } from "node:fs/promises";
import type { ChunkLocation, ChunkStore } from "./chunk-store.js";

/** A pack is rewritten when its live chunks hold less than this fraction of its blob bytes. */
export const REWRITE_BELOW = 0.5;

export interface PackGcReport {
  /** Chunks the index no longer lists (no point references them). */
  freedChunks: number;
  /** Pack-file bytes deleted (rewritten packs count whole; their live part was copied). */
  freedBytes: number;
  deletedPacks: number;
  rewrittenPacks: number;
}

export async function collectPacks(store: ChunkStore, live: ReadonlySet<string>): Promise<PackGcReport> {
  const { packs, partial } = await store.listPacks();
  const byPack = new Map<string, [string, ChunkLocation][]>();
  let freedChunks = 0;
  for (const [h, loc] of store.locations()) {
    if (!live.has(h)) {
      freedChunks++;
      continue;
    }
    byPack.set(loc.pack, [...(byPack.get(loc.pack) ?? []), [h, loc]]);
  }
  const doomed: string[] = [];
  let rewrittenPacks = 0;
  for (const id of packs) {
    const here = byPack.get(id) ?? [];
    if (here.length === 0) {
      doomed.push(id);
      continue;
    }
    let total: number;
    try {
      total = (await store.readPack(id)).entries.reduce((n, e) => n + e.stored, 0);
    } catch {
      continue; // a damaged trailer is `check`'s business; its live chunks may still read
    }
    const liveBytes = here.reduce((n, [, l]) => n + l.stored, 0);
    if (liveBytes >= total * REWRITE_BELOW) continue;
    let copied = true;
    for (const [h] of here) {
      try {
        await store.rewrite(h);
      } catch {
        copied = false; // a bad live chunk: keep the pack (check reports it)
      }
    }
    if (copied) {
      doomed.push(id);
      rewrittenPacks++;
    }
  }
  await store.sync();
  await store.replaceIndex([...store.locations()].filter(([h]) => live.has(h)));
  const gone = new Set(doomed);
  let freedBytes = 0;
  for (const id of doomed) freedBytes += await store.deletePack(id);
  for (const p of partial) await rm(p, { force: true });
  const existing = new Set(packs);
  await store.dropMarkers((_h, pack) => gone.has(pack) || !existing.has(pack));
  await store.sync();
  return { freedChunks, freedBytes, deletedPacks: doomed.length - rewrittenPacks, rewrittenPacks };
}
