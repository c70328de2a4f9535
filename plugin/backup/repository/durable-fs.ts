/**
 * Durable file-system steps the repository's atomic commit is built from: write
 * a file and fsync it, fsync a directory (so a rename or create in it survives a
 * crash), and rename-into-place. POSIX rename is atomic: a reader sees the old
 * name or the new one, never a half-written file.
 */
import { open, rename, rm } from "node:fs/promises";

/** Writes `data` to `path` (created or truncated) and fsyncs it. */
export async function writeFileSynced(path: string, data: Buffer | string): Promise<void> {
  const fh = await open(path, "w");
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsync a directory: makes the creates, renames and unlinks inside it durable. */
export async function syncDir(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes to `path.tmp-<pid>`, fsyncs, renames over `path`, fsyncs the directory. */
export async function writeFileAtomic(path: string, data: Buffer | string, dir: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFileSynced(tmp, data);
    await rename(tmp, path);
  } catch (e: unknown) {
    await rm(tmp, { force: true });
    throw e;
  }
  await syncDir(dir);
}
