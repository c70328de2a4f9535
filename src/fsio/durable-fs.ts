/**
 * Durable file-system steps every atomic commit here is built from (the backup
 * repository's points and indexes, the array's control.json and RBD catalogue,
 * the hypervisor's state file): write a file and fsync it, fsync a directory (so
 * a rename or create in it survives a crash), and rename-into-place. POSIX
 * rename is atomic: a reader sees the old name or the new one, never a
 * half-written file.
 */
import { open, readFile, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";

/** Writes `data` to `path` (created or truncated, with `mode` if created) and fsyncs it. */
export async function writeFileSynced(path: string, data: Buffer | string, mode?: number): Promise<void> {
  const fh = await open(path, "w", mode);
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

/** Writes to `path.tmp-<pid>`, fsyncs, renames over `path`, fsyncs the directory (`path`'s own unless given). */
export async function writeFileAtomic(path: string, data: Buffer | string, dir: string = dirname(path), mode?: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFileSynced(tmp, data, mode);
    await rename(tmp, path);
  } catch (e: unknown) {
    await rm(tmp, { force: true });
    throw e;
  }
  await syncDir(dir);
}

/** The file's text, or undefined when it does not exist; any other error is thrown. */
export async function readFileIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}
