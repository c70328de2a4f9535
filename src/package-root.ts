/**
 * Where this package is installed, and what its package.json says: the root,
 * the built `sanbox` command (`bin.sanbox`) and the version. package.json is
 * the one place the CLI's path is written; tests, benchmarks, scripts and
 * `--version` all read it from here.
 *
 * The root is found by walking up from this module. A fixed number of `..`
 * would not do: the sources run from src/ (vitest) and the build from
 * dist/src/. Matching the name, not just any package.json, keeps a stray one
 * on the way up from being taken for the root.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGE_NAME = "sanbox";

interface PackageInfo {
  readonly root: string;
  readonly version: string;
  /** Absolute path of the built `sanbox` entry point. */
  readonly bin: string;
}

function readManifest(file: string): Record<string, unknown> | undefined {
  try {
    const pkg: unknown = JSON.parse(readFileSync(file, "utf8"));
    return typeof pkg === "object" && pkg !== null ? (pkg as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

let cached: PackageInfo | undefined;

export function packageInfo(): PackageInfo {
  if (cached !== undefined) return cached;
  // Not import.meta.dirname: that needs Node 20.11, and the package supports 20.5.
  const here = dirname(fileURLToPath(import.meta.url));
  for (let dir = here; ; dir = dirname(dir)) {
    const pkg = existsSync(join(dir, "package.json")) ? readManifest(join(dir, "package.json")) : undefined;
    if (pkg?.name === PACKAGE_NAME) {
      const bin = pkg.bin;
      const rel = typeof bin === "object" && bin !== null ? (bin as Record<string, unknown>)[PACKAGE_NAME] : undefined;
      if (typeof rel !== "string" || typeof pkg.version !== "string") throw new Error(`${join(dir, "package.json")} lacks bin.${PACKAGE_NAME} or version`);
      cached = { root: dir, version: pkg.version, bin: join(dir, rel) };
      return cached;
    }
    if (dirname(dir) === dir) throw new Error(`no package.json named "${PACKAGE_NAME}" above ${here}`);
  }
}

export function packageRoot(): string {
  return packageInfo().root;
}

/** The built `sanbox` command (package.json `bin.sanbox`), to run as `node <path> …`. */
export function sanboxBin(): string {
  return packageInfo().bin;
}
