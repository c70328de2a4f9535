/**
 * Benchmark plumbing: start our server (as a separate process, like a user would)
 * or nbdkit, time a command, and make on-disk scratch space. Scratch lives under
 * .bench-tmp/ on the project's disk, never tmpfs: nbdcopy's hole seeking on tmpfs
 * is pathologically slow and would measure the wrong thing.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { sanboxBin } from "../src/package-root.js";

export const ROOT = resolve(import.meta.dirname, "../..");
export const CLI = sanboxBin();

export function scratch(name: string): { dir: string; cleanup: () => void } {
  const base = join(ROOT, ".bench-tmp");
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(join(base, `${name}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface Served {
  uri: string;
  stop(): Promise<void>;
}

async function waitForSocket(path: string, child: ChildProcess, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!existsSync(path)) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode} before listening`);
    if (Date.now() > deadline) throw new Error(`${what} did not create ${path} within 15 s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null) return;
    const done = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), 5000);
    await done;
    clearTimeout(t);
  };
}

/** Our `sanbox nbd serve` in its own process. */
export async function startOurs(sock: string, args: string[]): Promise<Served> {
  const child = spawn(process.execPath, [CLI, "nbd", "serve", "--unix", sock, ...args], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, SANBOX_LOG: "warn" },
  });
  await waitForSocket(sock, child, "sanbox nbd serve");
  return { uri: `nbd+unix:///?socket=${sock}`, stop: stopper(child) };
}

/** nbdkit in the foreground on a Unix socket. */
export async function startNbdkit(sock: string, args: string[]): Promise<Served> {
  const child = spawn("/usr/bin/nbdkit", ["-f", "--exit-with-parent", "-U", sock, ...args], { stdio: ["ignore", "ignore", "inherit"] });
  await waitForSocket(sock, child, "nbdkit");
  return { uri: `nbd+unix:///?socket=${sock}`, stop: stopper(child) };
}

/** Wall-clock seconds of one command run. */
export async function timeCommand(cmd: string, args: string[]): Promise<number> {
  const t0 = process.hrtime.bigint();
  await execa(cmd, args, { env: { ...process.env, PATH: `/usr/bin:${process.env.PATH ?? ""}` } });
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Best of n runs: the least-disturbed measurement on a shared machine. */
export async function bestOf(n: number, f: () => Promise<number>): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < n; i++) best = Math.min(best, await f());
  return best;
}

/**
 * Best of `n` for two measurements taken in turn (a, b, a, b, …), so warm-up
 * and background load fall on both alike instead of on whichever runs first.
 */
export async function bestOfAlternating<T extends { secs: number }>(n: number, a: () => Promise<T>, b: () => Promise<T>): Promise<[T, T]> {
  let bestA: T | undefined;
  let bestB: T | undefined;
  for (let i = 0; i < n; i++) {
    const ra = await a();
    if (bestA === undefined || ra.secs < bestA.secs) bestA = ra;
    const rb = await b();
    if (bestB === undefined || rb.secs < bestB.secs) bestB = rb;
  }
  if (bestA === undefined || bestB === undefined) throw new Error("bestOfAlternating needs n >= 1");
  return [bestA, bestB];
}

const started = performance.now();

/** A progress line on stderr, with the seconds since the bench started. */
export function progress(msg: string): void {
  process.stderr.write(`bench: [${((performance.now() - started) / 1000).toFixed(1)} s] ${msg}\n`);
}

export function argValue(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** `sanbox array serve --data DIR [extraArgs]` as a process, until `stop()` (SIGTERM). */
export interface Daemon {
  rpc: string;
  nbdSocket: string;
  stop(): Promise<void>;
}

export async function startArray(dir: string, extraArgs: readonly string[] = []): Promise<Daemon> {
  const child: ChildProcess = spawn(process.execPath, [sanboxBin(), "array", "serve", "--data", dir, ...extraArgs], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, SANBOX_LOG: "warn" },
  });
  let out = "";
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      if (/^nbd /m.test(out)) resolve();
    });
    child.once("exit", (c) => reject(new Error(`array serve exited with ${c ?? "signal"}`)));
  });
  const rpc = /^rpc (\S+)$/m.exec(out)?.[1] ?? "";
  return {
    rpc,
    nbdSocket: join(dir, "nbd.sock"),
    stop: async () => {
      if (child.exitCode !== null) return;
      const done = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      await done;
    },
  };
}

/** SIZE bytes of random data in `path` (one 16 MiB random chunk, repeated). */
export function writeRandomFile(path: string, size: number): void {
  const chunk = Buffer.alloc(16 * 1024 * 1024);
  for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, i);
  writeFileSync(path, Buffer.alloc(0));
  for (let off = 0; off < size; off += chunk.length) writeFileSync(path, chunk.subarray(0, Math.min(chunk.length, size - off)), { flag: "a" });
}
