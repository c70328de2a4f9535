/**
 * `backup check [--repair]`: the whole repository, checked the way a reader
 * would rely on it.
 *
 *  1. every sealed pack's trailer (pack-format.ts rules and CRC);
 *  2. every index file (CRC); every live index location against its pack's
 *     trailer (the same hash, offset and lengths);
 *  3. every live chunk read, decompressed and re-hashed (bad ones are marked
 *     damaged, so the next backup of that content heals them);
 *  4. blobs in packs whose hash the index does not know (an index was lost);
 *  5. every entry under points/ (repository.ts `scan`).
 *
 * Superseded copies (a damaged copy after a good one was stored) and
 * `.partial` packs are garbage, not problems: prune reclaims them.
 *
 * Repair (under the maintenance lock): the index is rebuilt from what verified
 * — live copies that read good, plus good blobs found through pack trailers —
 * and written as one file; live chunks in packs with a damaged trailer are
 * copied into a new pack and those packs deleted; `.partial` packs are
 * deleted; then every point that is still damaged is removed. The report is a
 * fresh check after the repair: clean means every remaining point reads.
 */
import { rm } from "node:fs/promises";
import { errorMessage } from "../../../src/errors.js";
import type { ChunkLocation } from "./chunk-store.js";
import type { PackEntry } from "./pack-format.js";
import type { Repository } from "./repository.js";

export interface CheckProblem {
  kind: "pack" | "index" | "chunk" | "point";
  name: string;
  reason: string;
}

export interface CheckReport {
  clean: boolean;
  packs: number;
  chunks: number;
  points: number;
  problems: CheckProblem[];
  /** What --repair did (empty without it). */
  repaired: string[];
  /** Superseded or unreferenced blobs, leftover .partial packs and index/.tmp-* files: prune reclaims them. */
  garbage: { blobs: number; partialPacks: number; unfinishedIndexFiles: number };
}

interface Scan {
  report: CheckReport;
  goodPacks: Map<string, PackEntry[]>;
  badPacks: Set<string>;
  goodLive: [string, ChunkLocation][];
  partial: string[];
}

async function scanRepository(repo: Repository): Promise<Scan> {
  const store = repo.chunks;
  await store.refresh();
  const problems: CheckProblem[] = [];
  const { packs, partial } = await store.listPacks();
  const goodPacks = new Map<string, PackEntry[]>();
  const badPacks = new Set<string>();
  for (const id of packs) {
    try {
      goodPacks.set(id, (await store.readPack(id)).entries);
    } catch (e: unknown) {
      badPacks.add(id);
      problems.push({ kind: "pack", name: id, reason: errorMessage(e) });
    }
  }
  for (const [f, why] of store.indexErrors) problems.push({ kind: "index", name: f, reason: why });
  const goodLive: [string, ChunkLocation][] = [];
  const live = [...store.locations()];
  const blobAt = new Map<string, PackEntry>();
  for (const [id, entries] of goodPacks) for (const e of entries) blobAt.set(`${id}:${e.offset}`, e);
  const existing = new Set(packs);
  for (const [h, loc] of live) {
    if (!existing.has(loc.pack)) {
      problems.push({ kind: "chunk", name: h, reason: `pack ${loc.pack} is missing` });
      continue;
    }
    const e = blobAt.get(`${loc.pack}:${loc.offset}`);
    if (goodPacks.has(loc.pack) && (e === undefined || e.hash.toString("hex") !== h || e.stored !== loc.stored || e.raw !== loc.raw || e.flags !== loc.flags)) {
      problems.push({ kind: "index", name: h, reason: `the index puts it at pack ${loc.pack} offset ${loc.offset}; that pack's trailer lists no such blob` });
      continue;
    }
    try {
      await store.readAt(h, loc);
      goodLive.push([h, loc]);
    } catch (e2: unknown) {
      await store.markDamaged(h, loc);
      problems.push({ kind: "chunk", name: h, reason: `pack ${loc.pack} offset ${loc.offset}: ${errorMessage(e2)}` });
    }
  }
  // Blobs that are not the live copy of their hash are garbage; those whose hash no index lists at all were lost from the index.
  const liveAt = new Set(live.map(([, l]) => `${l.pack}:${l.offset}`));
  const indexed = new Set(live.map(([h]) => h));
  let garbage = 0;
  const lost = new Set<string>();
  for (const [id, entries] of goodPacks) {
    for (const e of entries) {
      if (liveAt.has(`${id}:${e.offset}`)) continue;
      garbage++;
      const h = e.hash.toString("hex");
      if (!indexed.has(h) && !store.isDamaged(h, { pack: id, offset: e.offset, stored: e.stored, raw: e.raw, flags: e.flags })) lost.add(h);
    }
  }
  const referenced = await repo.liveHashes();
  for (const h of lost) if (referenced.has(h)) problems.push({ kind: "index", name: h, reason: "in a pack but in no index file" });
  const entries = await repo.scan();
  for (const e of entries) {
    const why = e.status === "damaged" ? e.reason : await repo.badChunks(e.point);
    if (why !== undefined) problems.push({ kind: "point", name: e.id, reason: why });
  }
  const report: CheckReport = {
    clean: problems.length === 0,
    packs: packs.length,
    chunks: live.length,
    points: entries.length,
    problems,
    repaired: [],
    garbage: { blobs: garbage, partialPacks: partial.length, unfinishedIndexFiles: (await store.unfinishedIndexFiles()).length },
  };
  return { report, goodPacks, badPacks, goodLive, partial };
}

export async function checkRepository(repo: Repository, opts: { repair?: boolean } = {}): Promise<CheckReport> {
  if (opts.repair !== true) return (await scanRepository(repo)).report;
  return repo.maintenance("check --repair", async () => {
    const first = await scanRepository(repo);
    const repaired: string[] = [];
    const store = repo.chunks;
    if (!first.report.clean || first.report.garbage.partialPacks > 0) {
      // Good copies: the verified live ones, then any verified blob from a readable trailer for hashes without one.
      const good = new Map<string, ChunkLocation>(first.goodLive);
      for (const [id, entries] of first.goodPacks) {
        for (const e of entries) {
          const h = e.hash.toString("hex");
          if (good.has(h)) continue;
          const loc: ChunkLocation = { pack: id, offset: e.offset, stored: e.stored, raw: e.raw, flags: e.flags };
          try {
            await store.readAt(h, loc);
            good.set(h, loc);
          } catch {
            // a bad blob stays dead in its pack until prune
          }
        }
      }
      await store.replaceIndex([...good]);
      // Live chunks in packs whose trailer is damaged: copy them out, so the pack can go.
      for (const [h, loc] of [...good]) {
        if (!first.badPacks.has(loc.pack)) continue;
        await store.rewrite(h);
        repaired.push(`copied chunk ${h} out of damaged pack ${loc.pack}`);
      }
      await store.sync();
      await store.replaceIndex([...store.locations()]);
      for (const id of first.badPacks) {
        await store.deletePack(id);
        repaired.push(`deleted damaged pack ${id}`);
      }
      for (const p of first.partial) await rm(p, { force: true });
      if (first.partial.length > 0) repaired.push(`deleted ${first.partial.length} unfinished pack(s)`);
      const n = await store.dropMarkers((h, pack, offset) => {
        const l = store.locate(h);
        return l === undefined || l.pack !== pack || l.offset !== offset;
      });
      if (n > 0) repaired.push(`cleared ${n} damaged-copy marker(s)`);
      repaired.push("rebuilt the index from verified copies");
      await store.sync();
    }
    for (const e of await repo.scan()) {
      const why = e.status === "damaged" ? e.reason : await repo.badChunks(e.point);
      if (why === undefined) continue;
      await repo.removeEntry(e.id);
      repaired.push(`removed point ${e.id} (${why})`);
    }
    const after = (await scanRepository(repo)).report;
    return { ...after, repaired };
  });
}
