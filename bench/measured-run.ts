/**
 * One timed child process with its peak RSS, for rows that compare a whole
 * command (ours or a peer) as a user runs it.
 *
 * Peak RSS comes from GNU time (`/usr/bin/time -f %M`, scripts/setup.mjs
 * installs it): the kernel's ru_maxrss of the waited-for child, so it is the
 * true high-water mark, not a sample (polling /proc/PID/status VmHWM would
 * miss growth in the last interval before exit). Wall time is taken here
 * around the whole run, process start included, as a user would see it.
 *
 * A run that exceeds its timeout is killed with its process group (the child
 * is started detached, as the leader of a new group, so that the kill reaches
 * node under GNU time) and reported as `timedOut`, never thrown: a bench row
 * must be able to say "did not finish in N s".
 */
import { spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";

export interface MeasuredRun {
  seconds: number;
  /** Peak resident set of the child in bytes (undefined when it was killed). */
  peakRssBytes: number | undefined;
  exitCode: number | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

export interface MeasureOptions {
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Where GNU time writes its report (deleted after reading). */
  usageFile: string;
}

export async function measuredRun(cmd: string, args: string[], o: MeasureOptions): Promise<MeasuredRun> {
  const t0 = process.hrtime.bigint();
  const child = spawn("/usr/bin/time", ["-f", "%M", "-o", o.usageFile, cmd, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
    env: o.env ?? process.env,
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  let timedOut = false;
  const timer =
    o.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
        }, o.timeoutMs);
  const exitCode = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve(code));
  });
  if (timer !== undefined) clearTimeout(timer);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  let peakRssBytes: number | undefined;
  try {
    // GNU time writes "Command exited with non-zero status N" before the figure on failure.
    const kib = Number(readFileSync(o.usageFile, "utf8").trim().split("\n").pop());
    if (Number.isFinite(kib) && kib > 0) peakRssBytes = kib * 1024;
  } catch {
    // killed before GNU time wrote anything
  }
  rmSync(o.usageFile, { force: true });
  return { seconds, peakRssBytes, exitCode, timedOut, stdout, stderr };
}

/** A measured run that must succeed: its stderr in the error otherwise. */
export async function measuredOk(cmd: string, args: string[], o: MeasureOptions): Promise<MeasuredRun> {
  const r = await measuredRun(cmd, args, o);
  if (r.timedOut) throw new Error(`${cmd} ${args.join(" ")}: timed out after ${o.timeoutMs ?? 0} ms`);
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(" ")}: exit ${r.exitCode}\n${r.stderr.slice(-2000)}`);
  return r;
}
