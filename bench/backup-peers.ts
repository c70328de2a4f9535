/**
 * The peers of `bench -- backup`, each run as its own process on the bench's
 * scratch disk, exactly as an administrator would run it:
 *
 *  - nbdcopy (libnbd) copying NBD exports to raw files and raw files to LUN
 *    exports, with --flush, so its copy is on disk when it returns as a backup
 *    point is (our repository fsyncs every chunk and the catalog);
 *  - restic (Debian's package, scripts/setup.mjs) backing up raw image files
 *    into a local repository, no cache (the repository is on the same disk,
 *    a cache would only duplicate it). restic fsyncs its pack files too.
 *
 * Repository sizes are the apparent sizes of every file under the directory
 * (what a copy of the repository would move), counted the same way for both.
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { measuredOk, type MeasuredRun } from "./measured-run.js";

const RESTIC = "/usr/bin/restic";
const NBDCOPY = "/usr/bin/nbdcopy";
const RESTIC_ENV = { ...process.env, RESTIC_PASSWORD: "sanbox-bench", RESTIC_PROGRESS_FPS: "0.1" };

export async function resticInit(repo: string): Promise<void> {
  await execa(RESTIC, ["-r", repo, "--no-cache", "init"], { env: RESTIC_ENV });
}

/**
 * `restic backup DIR`: the first run reads and stores everything; a later
 * run of the same DIR finds its parent snapshot, re-reads files whose
 * metadata changed (all of ours: the images were rewritten) and stores only
 * the chunks it has not seen.
 */
export function resticBackup(repo: string, dir: string, usageFile: string): Promise<MeasuredRun> {
  return measuredOk(RESTIC, ["-r", repo, "--no-cache", "backup", "--host", "bench", "--json", dir], { env: RESTIC_ENV, usageFile });
}

export async function resticVersion(): Promise<string> {
  return (await execa(RESTIC, ["version"])).stdout.trim();
}

/** The repository's format version from its config (2 is the one with compression). */
export async function resticRepoVersion(repo: string): Promise<string> {
  const r = await execa(RESTIC, ["-r", repo, "--no-cache", "cat", "config"], { env: RESTIC_ENV, reject: false });
  const m = /"version":\s*(\d+)/.exec(r.stdout);
  return m?.[1] ?? "unknown";
}

/** Copies an NBD export (or file) to a raw file (or NBD export). */
export function nbdcopy(from: string, to: string, usageFile: string, extra: string[] = []): Promise<MeasuredRun> {
  return measuredOk(NBDCOPY, ["--flush", ...extra, from, to], { usageFile });
}

/** Apparent bytes of every file under `dir`. */
export function treeBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) n += treeBytes(p);
    else if (e.isFile()) n += statSync(p).size;
  }
  return n;
}
