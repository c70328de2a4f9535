/**
 * Real external tools for interop tests. A missing tool FAILS the test with the
 * install command; it never skips. nbdsh runs with /usr/bin first on PATH because
 * a pyenv python3 may lack the `nbd` module.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";

const PACKAGES: Record<string, string> = {
  nbdkit: "nbdkit",
  nbdinfo: "libnbd-bin",
  nbdcopy: "libnbd-bin",
  nbdfuse: "libnbd-bin",
  nbdsh: "python3-libnbd",
  "qemu-img": "qemu-utils",
  "qemu-nbd": "qemu-utils",
  fusermount3: "fuse3",
};

export function requireTool(name: string): string {
  const path = `/usr/bin/${name}`;
  if (!existsSync(path)) {
    const pkg = PACKAGES[name] ?? name;
    throw new Error(`${name} is not installed: run "apt-get install -y ${pkg}" (or "npm run setup" as root)`);
  }
  return path;
}

export const TOOL_ENV = { PATH: `/usr/bin:${process.env.PATH ?? ""}`, LIBNBD_DEBUG: "0" };

export interface ToolOptions {
  input?: string | Buffer;
  reject?: boolean;
  cwd?: string;
  timeout?: number;
  env?: Record<string, string>;
}

export interface ToolResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Run a real tool; throws with its stderr on non-zero exit unless `reject: false`. */
export async function tool(name: string, args: readonly string[], opts: ToolOptions = {}): Promise<ToolResult> {
  const bin = requireTool(name);
  const r = await execa(bin, args, {
    env: { ...TOOL_ENV, ...opts.env },
    timeout: opts.timeout ?? 60_000,
    reject: opts.reject ?? true,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
  });
  return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? -1 };
}

/** A temp directory on disk (not tmpfs), removed by the returned cleanup. */
export function tempDir(prefix = "sanbox-test-"): { dir: string; cleanup: () => void } {
  const base = existsSync("/var/tmp") ? "/var/tmp" : tmpdir();
  const dir = mkdtempSync(join(base, prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
