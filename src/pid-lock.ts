/**
 * One daemon per data directory: an exclusive `serve.pid` file created with O_EXCL.
 * A lock left by a dead process (kill -9) is taken over; a live one is refused.
 */
import { open as openFile, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { FailedPreconditionError } from "./errors.js";

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Returns the unlock function. `what` names the daemon in the refusal ("array daemon"). */
export async function lockDirectory(dir: string, what: string): Promise<() => Promise<void>> {
  const path = join(dir, "serve.pid");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await openFile(path, "wx", 0o644);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return () => rm(path, { force: true });
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = Number((await readFile(path, "utf8").catch(() => "")).trim());
      if (isAlive(pid)) throw new FailedPreconditionError(`another ${what} (pid ${pid}) is serving ${dir}`);
      await rm(path, { force: true });
    }
  }
  throw new FailedPreconditionError(`cannot lock ${dir}`);
}
