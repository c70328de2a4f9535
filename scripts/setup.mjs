#!/usr/bin/env node
// Ensures the Debian packages the tests, demo and benchmarks need are present.
// As root it installs what is missing with apt-get; otherwise it prints the exact
// command and exits 1. Tests never skip on a missing tool: this script is why.
// `--rbd` adds the Ceph RBD tier's packages (test/rbd/, `--backend rbd`); without the
// flag the default quickstart installs exactly what it always did.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

/** tool on PATH (or absolute path) -> Debian package that ships it */
export const REQUIRED = [
  ["/usr/bin/nbdkit", "nbdkit"],
  ["/usr/bin/nbdinfo", "libnbd-bin"],
  ["/usr/bin/nbdcopy", "libnbd-bin"],
  ["/usr/bin/nbdfuse", "libnbd-bin"],
  ["/usr/bin/nbdsh", "python3-libnbd"],
  ["/usr/bin/qemu-img", "qemu-utils"],
  ["/usr/bin/qemu-nbd", "qemu-utils"],
  ["/usr/bin/fusermount3", "fuse3"],
  // `npm run bench -- backup`: restic is a peer; GNU time reads the backup's peak RSS.
  ["/usr/bin/restic", "restic"],
  ["/usr/bin/time", "time"],
  // README and docs/*.md examples pipe --json output through jq; e2e 670 runs them as printed.
  ["/usr/bin/jq", "jq"],
];

/** Only with --rbd: a throwaway single-node cluster (scripts/ceph-cluster.mjs) and qemu's rbd driver. */
export const RBD_REQUIRED = [
  ["/usr/bin/ceph-mon", "ceph-mon"],
  ["/usr/bin/ceph-osd", "ceph-osd"],
  ["/usr/bin/ceph", "ceph-common"],
  ["/usr/bin/rbd", "ceph-common"],
  ["/usr/lib/x86_64-linux-gnu/qemu/block-rbd.so", "qemu-block-extra"],
];

const wanted = process.argv.includes("--rbd") ? [...REQUIRED, ...RBD_REQUIRED] : REQUIRED;
const missing = [...new Set(wanted.filter(([tool]) => !existsSync(tool)).map(([, pkg]) => pkg))];
const quiet = process.argv.includes("--quiet");
if (missing.length === 0) {
  if (!quiet) console.error("setup: all required packages present");
  process.exit(0);
}
const cmd = `apt-get update && apt-get install -y ${missing.join(" ")}`;
const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
if (!isRoot) {
  console.error(`setup: missing Debian packages: ${missing.join(", ")}\nsetup: run as root:\n  ${cmd}`);
  process.exit(1);
}
console.error(`setup: installing ${missing.join(", ")} ...`);
const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
const upd = spawnSync("apt-get", ["update", "-qq"], { stdio: ["ignore", "inherit", "inherit"], env });
if (upd.status !== 0) {
  console.error(`setup: apt-get update failed (exit ${upd.status}); run manually:\n  ${cmd}`);
  process.exit(1);
}
try {
  execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], { stdio: ["ignore", "inherit", "inherit"], env });
} catch {
  console.error(`setup: apt-get install failed; run manually:\n  ${cmd}`);
  process.exit(1);
}
const still = wanted.filter(([tool]) => !existsSync(tool)).map(([t]) => t);
if (still.length > 0) {
  console.error(`setup: still missing after install: ${still.join(", ")}`);
  process.exit(1);
}
console.error("setup: done");
