/**
 * `sanbox backup …` and `sanbox restore`: the backup plugin on the command line.
 *
 *   sanbox backup run VM --repo DIR [--hypervisor EP] [--array EP] [--json]
 *   sanbox backup list|show|verify|prune|serve|export|delete|check …
 *   sanbox restore POINT [--disk NAME] --to FILE|NBD-URI|lun:NAME --repo DIR [--force]
 *
 * The repository is --repo, else $SANBOX_REPO. The array is --array, else
 * $SANBOX_ENDPOINT, else the local daemon; the hypervisor is --hypervisor, else
 * $SANBOX_HYPERVISOR_ENDPOINT, else the local one; $SANBOX_TOKEN is the bearer
 * token for both. Results go to stdout (a table, or JSON with --json); logs and
 * progress bars go to stderr. POINT is a point id, a unique prefix, or VM@latest.
 *
 * The commands that move data (backup run, restore, backup export) run under
 * `interruptible` (run.ts): SIGINT/SIGTERM stop them through an AbortSignal,
 * they clean up, and exit 130/143. `backup run` calls the array and the
 * hypervisor before it creates the repository, so a daemon that is not
 * running costs one line and leaves nothing behind. `backup serve` and
 * `backup export` hold their point (Repository.holdPoint) while they read it.
 */
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvalidArgumentError as CommanderArgError, type Command } from "commander";
import { execa } from "execa";
import { CsiCbtArrayDriver } from "../plugin/backup/csi-cbt-driver.js";
import { GrpcArrayDriver } from "../plugin/backup/grpc-array-driver.js";
import { runBackup, type BackupSummary } from "../plugin/backup/backup-run.js";
import { PointExportProvider, RepositoryBackend } from "../plugin/backup/repository-backend.js";
import type { BackupPoint } from "../plugin/backup/repository/catalog.js";
import { checkRepository, type CheckReport } from "../plugin/backup/repository/check.js";
import { validChunkSize } from "../plugin/backup/repository/disk-map.js";
import { REWRITE_BELOW } from "../plugin/backup/repository/pack-gc.js";
import { DEFAULT_CHUNK_SIZE, Repository, type PointEntry } from "../plugin/backup/repository/repository.js";
import { parseRestoreTarget, restoreImage } from "../plugin/backup/restore.js";
import { verifyPoint } from "../plugin/backup/verify-point.js";
import { CorruptError, InvalidArgumentError, ToolMissingError } from "../src/errors.js";
import { createLogger } from "../src/log.js";
import { observeReads } from "../src/nbd/backends/observe-reads.js";
import { NbdServer } from "../src/nbd/server.js";
import { formatNbdUri } from "../src/nbd/uri.js";
import { describeViolation } from "../src/oracle/verify.js";
import { connectHypervisor } from "../src/rpc/hypervisor-service-def.js";
import { parseProgressMode, ProgressReporter } from "../src/progress.js";
import { formatSize, parseSize } from "../src/size.js";
import { defaultEndpoint as defaultArrayEndpoint } from "./array-paths.js";
import { defaultHypervisorDataDir, hypervisorSocketPath } from "../simulator/hypervisor/daemon.js";
import { interruptible } from "./run.js";
import { formatTable } from "./table.js";

interface RepoOpt {
  repo?: string;
  json?: boolean;
  threads?: string;
}

const THREADS_HELP = "worker threads that hash and (de)compress chunks (default: one per core; 0 = on the main thread)";

/** Repository.open's options from the command line (--threads). */
function storeOpts(options: RepoOpt): { threads?: number } {
  if (options.threads === undefined) return {};
  const n = Number(options.threads);
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new InvalidArgumentError(`--threads ${options.threads}: expected a whole number from 0 to 64`);
  return { threads: n };
}

function repoDir(options: RepoOpt): string {
  const d = options.repo ?? process.env.SANBOX_REPO;
  if (d === undefined || d === "") throw new InvalidArgumentError("give the backup repository with --repo DIR (or $SANBOX_REPO)");
  return d;
}

function token(): { token: string } | Record<string, never> {
  const t = process.env.SANBOX_TOKEN;
  return t !== undefined && t !== "" ? { token: t } : {};
}

function hypervisorEndpoint(options: { hypervisor?: string }): string {
  const env = process.env.SANBOX_HYPERVISOR_ENDPOINT;
  return options.hypervisor ?? (env !== undefined && env !== "" ? env : `unix:${hypervisorSocketPath(defaultHypervisorDataDir())}`);
}

function print(options: { json?: boolean }, data: unknown, text: () => string): void {
  process.stdout.write(options.json === true ? `${JSON.stringify(data, null, 2)}\n` : text());
}

/** --progress MODE for the commands that move data (src/progress.ts); logs and progress go to stderr. */
const PROGRESS_HELP = "progress on stderr: auto (a bar on a terminal, else a line every 5 s) | bar | plain | json | none";
function progressReporter(options: { progress: string }): ProgressReporter {
  return new ProgressReporter(parseProgressMode(options.progress));
}

export function formatBackupSummary(s: BackupSummary): string {
  const rows = s.disks.map((d) => [d.name, d.kind, formatSize(d.size), formatSize(d.bytesRead), formatSize(d.bytesWritten), d.kind === "vmdk" ? formatSize(d.bytesReverted) : "-"]);
  const steps = Object.entries(s.durationsMs)
    .map(([k, v]) => `${k} ${v} ms`)
    .join(", ");
  return (
    `point ${s.point.id} (${s.kind}${s.point.reverted ? "" : ", NOT REVERTED: not time-consistent"})\n` +
    formatTable(["DISK", "KIND", "SIZE", "READ", "WRITTEN", "REVERTED"], rows) +
    `T1 ${s.t1}  (group snapshot ${s.point.base.name})\n` +
    `T2 ${s.t2}  (quiesce window ${s.quiesceWindowMs} ms)\n` +
    `read from the array: ${formatSize(s.arrayBytesRead)}\n` +
    `steps: ${steps}\n`
  );
}

function entryJson(e: PointEntry): Record<string, unknown> {
  if (e.status === "damaged") return { id: e.id, status: "damaged", reason: e.reason, ...(e.point !== undefined ? { vm: e.point.vm } : {}) };
  const p = e.point;
  return { id: p.id, status: "ok", vm: p.vm, kind: p.kind, createdAt: p.createdAt, t1: p.t1, t2: p.t2, reverted: p.reverted, workload: p.workload, disks: p.disks.map((d) => ({ name: d.name, kind: d.kind, size: d.size })), base: p.base };
}

function formatCheck(r: CheckReport): string {
  const lines = [`${r.clean ? "clean" : "NOT CLEAN"}: ${r.points} point(s), ${r.packs} pack(s), ${r.chunks} chunk(s) checked; garbage ${r.garbage.blobs} blob(s), ${r.garbage.partialPacks} unfinished pack(s), ${r.garbage.unfinishedIndexFiles} unfinished index file(s) (prune reclaims them)`];
  if (r.problems.length > 0) lines.push(formatTable(["KIND", "NAME", "PROBLEM"], r.problems.map((p) => [p.kind, p.name, p.reason])).trimEnd());
  for (const x of r.repaired) lines.push(`repaired: ${x}`);
  return lines.join("\n") + "\n";
}

function pointRow(p: BackupPoint): string[] {
  const size = p.disks.reduce((n, d) => n + d.size, 0);
  return [p.id, p.vm, p.kind + (p.reverted ? "" : " (no revert)"), p.t1, String(p.disks.length), formatSize(size), p.base.name];
}

function cbtSource(v: string): "array" | "csi" {
  if (v !== "array" && v !== "csi") throw new CommanderArgError("expected array or csi");
  return v;
}

export function registerBackup(program: Command): Command {
  const backup = program.command("backup").description("time-consistent VM backups (VMDKs on a datastore LUN + physical RDMs) into a repository");

  backup
    .command("run")
    .description("take a backup point of VM: group snapshot S1 (T1), RDMs from S1, quiesce + datastore snapshot S2 (T2), VMDKs from S2, revert to T1 from the array diff")
    .argument("<vm>", "VM name (as the hypervisor knows it)")
    .option("--repo <dir>", "backup repository (created if missing; default $SANBOX_REPO)")
    .option("--threads <n>", THREADS_HELP)
    .option("--hypervisor <endpoint>", "hypervisor endpoint (default: $SANBOX_HYPERVISOR_ENDPOINT or the local one)")
    .option("--array <endpoint>", "array control endpoint (default: $SANBOX_ENDPOINT or the local array)")
    .option("--full", "read everything even when a base exists")
    .option("--cbt <source>", "where changed extents come from: array (ArrayService GetChangedBlocks) or csi (CSI SnapshotMetadata GetMetadataDelta on the same endpoint)", cbtSource, "array")
    .option("--chunk-size <size>", "chunk size of a NEW repository (default: the array's CBT granularity, else 64K)")
    .option("--parallel <n>", "NBD reads in flight per disk", "8")
    .option("--no-revert", "TEST ONLY: skip the revert (step 6); the point is then not time-consistent (the oracle's negative control)")
    .option("--json", "machine-readable summary")
    .option("--progress <mode>", PROGRESS_HELP, "auto")
    .action(async (vm: string, options: RepoOpt & { hypervisor?: string; array?: string; full?: boolean; cbt: "array" | "csi"; chunkSize?: string; parallel: string; revert: boolean; progress: string }) => {
      const log = createLogger("backup");
      const dir = repoDir(options);
      const arrayOpts = { endpoint: options.array ?? defaultArrayEndpoint(), ...token() };
      const array = options.cbt === "csi" ? new CsiCbtArrayDriver(arrayOpts) : GrpcArrayDriver.connect(arrayOpts);
      const hv = connectHypervisor({ endpoint: hypervisorEndpoint(options), ...token() });
      const bar = progressReporter(options);
      try {
        // The first RPCs, unretried and before anything exists on disk: a daemon that is not
        // running is one line ("nothing answers at …; start it with …") and no repository directory.
        const facts = await array.facts();
        await hv.getVm({ name: vm });
        let chunkSize = options.chunkSize === undefined ? undefined : parseSize(options.chunkSize);
        // A new repository's chunk is the array's CBT granularity, so an incremental stores about what changed.
        if (chunkSize === undefined && !existsSync(join(dir, "repo.json"))) chunkSize = validChunkSize(facts.cbtGranularity) ? facts.cbtGranularity : DEFAULT_CHUNK_SIZE;
        const repo = await Repository.open(dir, { create: true, ...storeOpts(options), ...(chunkSize !== undefined ? { chunkSize } : {}) });
        const onProgress = (disk: string, phase: string, done: number, total: number): void => bar.update(phase, disk, done, total);
        const s = await interruptible((signal) => runBackup({ vm, repo, array, hypervisor: hv, revert: options.revert, full: options.full === true, parallel: Number(options.parallel), log, onProgress, signal }));
        bar.end();
        print(options, { ...s, point: s.point.id, base: s.point.base }, () => formatBackupSummary(s));
      } finally {
        bar.end();
        array.close();
        hv.close();
      }
    });

  backup
    .command("list")
    .description("list backup points, oldest first")
    .option("--repo <dir>", "backup repository")
    .option("--vm <name>", "only this VM's points")
    .option("--json", "machine-readable output")
    .action(async (options: RepoOpt & { vm?: string }) => {
      const repo = await Repository.open(repoDir(options), storeOpts(options));
      const entries = (await repo.scan()).filter((e) => options.vm === undefined || e.point?.vm === options.vm || (e.point === undefined && e.id.startsWith(`${options.vm}-`)));
      print(options, entries.map(entryJson), () =>
        formatTable(
          ["POINT", "STATUS", "VM", "KIND", "T1", "DISKS", "SIZE", "BASE SNAPSHOT"],
          entries.map((e) => (e.status === "ok" ? [e.id, "ok", ...pointRow(e.point).slice(1)] : [e.id, `DAMAGED: ${e.reason}`, e.point?.vm ?? "?", "", "", "", "", ""])),
        ),
      );
    });

  backup
    .command("show")
    .description("show one backup point: disks, sizes, per-disk bytes, T1/T2, base snapshots")
    .argument("<point>", "point id, unique prefix, or VM@latest")
    .option("--repo <dir>", "backup repository")
    .option("--json", "machine-readable output")
    .action(async (ref: string, options: RepoOpt) => {
      const repo = await Repository.open(repoDir(options), storeOpts(options));
      const p = await repo.get(ref);
      print(options, { ...p, disks: p.disks.map(({ s1Map: _m, ...d }) => d) }, () => {
        const rows = p.disks.map((d) => [d.name, d.slot, d.kind, formatSize(d.size), d.kind === "vmdk" ? (d.flatPath ?? "") : `${d.lunName ?? ""} ${d.naa ?? ""}`, formatSize(d.stats.bytesRead), formatSize(d.stats.bytesReverted)]);
        return (
          `point ${p.id}: VM ${p.vm}, ${p.kind}${p.parent !== undefined ? ` on ${p.parent}` : ""}${p.reverted ? "" : ", NOT REVERTED"}\n` +
          `T1 ${p.t1}, T2 ${p.t2}, quiesce window ${p.quiesceWindowMs} ms\n` +
          `base ${p.base.name} (${p.base.groupSnapshotId || "single"}): ${p.base.snapshots.map((s) => `${s.lunName}=${s.snapshotId}`).join(", ")}\n` +
          formatTable(["DISK", "SLOT", "KIND", "SIZE", "SOURCE", "READ", "REVERTED"], rows)
        );
      });
    });

  backup
    .command("verify")
    .description("read and re-hash every chunk of a point; with --oracle (or when the point was taken under the dependent-write workload) also run the consistency oracle; exits 1 on failure")
    .argument("<point>", "point id, unique prefix, or VM@latest")
    .option("--repo <dir>", "backup repository")
    .option("--threads <n>", THREADS_HELP)
    .option("--oracle", "run the consistency oracle even if the point does not record the dependent-write workload")
    .option("--no-oracle", "only re-hash the chunks")
    .option("--json", "machine-readable output")
    .action(async (ref: string, options: RepoOpt & { oracle?: boolean }) => {
      const repo = await Repository.open(repoDir(options), storeOpts(options));
      const p = await repo.get(ref);
      const v = await verifyPoint(repo, p, options.oracle !== undefined ? { oracle: options.oracle } : {});
      print(options, v, () => {
        const lines = [`point ${v.point}: ${v.chunks} chunks, ${v.badChunks.length} bad`];
        for (const b of v.badChunks) lines.push(`  ${b}`);
        if (v.oracle) {
          lines.push(v.oracle.consistent ? `oracle: consistent (prefix ${v.oracle.prefix} of the write chain)` : `oracle: NOT consistent (best prefix ${v.oracle.prefix}, ${v.oracle.violations.length} violations)`);
          for (const x of v.oracle.violations.slice(0, 10)) lines.push(`  ${describeViolation(x)}`);
        }
        return lines.join("\n") + "\n";
      });
      if (!v.ok) throw new CorruptError(`point ${v.point} failed verification`);
    });

  backup
    .command("prune")
    .description(`keep the newest N healthy points of each VM, delete the rest (except points \`backup serve\` is serving, which it names), and garbage-collect packs (packs with no live chunk are deleted, packs under ${REWRITE_BELOW * 100}% live are rewritten)`)
    .requiredOption("--keep <n>", "points to keep per VM")
    .option("--vm <name>", "only this VM's points")
    .option("--repo <dir>", "backup repository")
    .option("--json", "machine-readable output")
    .action(async (options: RepoOpt & { keep: string; vm?: string }) => {
      const repo = await Repository.open(repoDir(options), storeOpts(options));
      const r = await repo.prune(Number(options.keep), options.vm);
      const served = r.servedPoints.map((x) => `kept ${x.id}: it is being served by \`backup serve\` (process ${x.pids.join(", ")})\n`).join("");
      print(options, r, () => `${served}removed ${r.removedPoints.length} point(s), kept ${r.keptPoints.length}; freed ${r.freedChunks} chunks; ${r.deletedPacks} pack(s) deleted, ${r.rewrittenPacks} rewritten (${formatSize(r.freedBytes)} freed)\n`);
    });

  backup
    .command("delete")
    .description("delete one backup point (healthy or damaged); refuses while a backup runs or while `backup serve` serves it")
    .argument("<point>", "point id or unique prefix (as `backup list` shows it)")
    .option("--repo <dir>", "backup repository")
    .option("--json", "machine-readable output")
    .action(async (ref: string, options: RepoOpt) => {
      const repo = await Repository.open(repoDir(options), storeOpts(options));
      const id = await repo.deletePoint(ref);
      print(options, { deleted: id }, () => `deleted ${id} (its chunks go at the next prune)\n`);
    });

  backup
    .command("check")
    .description("check the whole repository: pack trailers, index files, every live chunk's hash, every point; exits 0 when clean")
    .option("--repo <dir>", "backup repository")
    .option("--threads <n>", THREADS_HELP)
    .option("--repair", "rebuild the index from verified copies, move chunks out of damaged packs, delete unreadable points")
    .option("--json", "machine-readable output")
    .action(async (options: RepoOpt & { repair?: boolean }) => {
      const repo = await Repository.open(repoDir(options), storeOpts(options));
      const r = await checkRepository(repo, { repair: options.repair === true });
      print(options, r, () => formatCheck(r));
      if (!r.clean) process.exitCode = 1;
    });

  backup
    .command("serve")
    .description("serve a point's disks read-only over NBD from the repository (one export per disk); prints the URIs, runs until SIGINT/SIGTERM")
    .argument("<point>", "point id, unique prefix, or VM@latest")
    .option("--repo <dir>", "backup repository")
    .option("--threads <n>", THREADS_HELP)
    .option("--unix <path>", "listen on this Unix socket (default: under the temp directory)")
    .option("--port <n>", "listen on this TCP port (127.0.0.1) instead")
    .action(async (ref: string, options: RepoOpt & { unix?: string; port?: string }) => {
      const repo = await Repository.open(repoDir(options), storeOpts(options));
      const p = await repo.get(ref);
      // The shared hold first: from the moment a URI is printed, prune keeps the point and delete refuses it.
      const hold = await repo.holdPoint(p.id);
      try {
        const { server, uris } = await servePoint(repo, p, options);
        const stopped = new Promise<void>((resolve) => {
          process.once("SIGINT", () => resolve());
          process.once("SIGTERM", () => resolve());
        });
        for (const [name, uri] of uris) process.stdout.write(`${name} ${uri}\n`);
        await stopped;
        await server.close();
      } finally {
        await hold.release();
      }
    });

  backup
    .command("export")
    .description("convert a point's disks to image files with qemu-img convert, reading the point over NBD")
    .argument("<point>", "point id, unique prefix, or VM@latest")
    .requiredOption("--out <dir>", "output directory")
    .option("--format <fmt>", "raw | qcow2 | vmdk", "qcow2")
    .option("--repo <dir>", "backup repository")
    .option("--threads <n>", THREADS_HELP)
    .option("--json", "machine-readable output")
    .option("--progress <mode>", PROGRESS_HELP, "auto")
    .action(async (ref: string, options: RepoOpt & { out: string; format: string; progress: string }) => {
      if (!["raw", "qcow2", "vmdk"].includes(options.format)) throw new InvalidArgumentError(`--format must be raw, qcow2 or vmdk, got ${options.format}`);
      const repo = await Repository.open(repoDir(options), storeOpts(options));
      const p = await repo.get(ref);
      await mkdir(options.out, { recursive: true });
      // Progress: how far into each disk qemu-img has read (it reads in order and skips holes).
      const bar = progressReporter(options);
      const reached = new Map<string, number>();
      const size = (disk: string): number => p.disks.find((d) => d.name === disk)?.size ?? 0;
      const onRead = (disk: string, offset: number, length: number): void => {
        const at = Math.max(reached.get(disk) ?? 0, offset + length);
        reached.set(disk, at);
        bar.update("export", disk, at, size(disk));
      };
      const hold = await repo.holdPoint(p.id);
      const { server, uris } = await servePoint(repo, p, {}, onRead);
      const files: { disk: string; file: string }[] = [];
      try {
        await interruptible(async (signal) => {
          for (const [name, uri] of uris) {
            bar.update("export", name, 0, size(name));
            const file = join(options.out, `${name}.${options.format === "raw" ? "img" : options.format}`);
            // cancelSignal: a stop kills qemu-img, and the file it was writing is removed (never left half made).
            const r = await execa("qemu-img", ["convert", "-f", "raw", "-O", options.format, uri, file], { reject: false, cancelSignal: signal });
            if (signal.aborted) {
              await rm(file, { force: true });
              process.stderr.write(`sanbox: export stopped: removed the partial ${file}; kept ${files.length} finished file(s)${files.map((f) => ` ${f.file}`).join("")}\n`);
              signal.throwIfAborted();
            }
            if (r.failed && (r as { code?: string }).code === "ENOENT") throw new ToolMissingError("qemu-img", "qemu-utils");
            if (r.exitCode !== 0) throw new InvalidArgumentError(`qemu-img convert failed: ${String(r.stderr)}`);
            bar.update("export", name, size(name), size(name));
            files.push({ disk: name, file });
          }
        });
      } finally {
        bar.end();
        await server.close();
        await hold.release();
      }
      print(options, files, () => files.map((f) => `${f.disk} ${f.file}\n`).join(""));
    });
  return backup;
}

async function servePoint(repo: Repository, p: BackupPoint, options: { unix?: string; port?: string }, onRead?: (disk: string, offset: number, length: number) => void): Promise<{ server: NbdServer; uris: Map<string, string> }> {
  const disks = new Map<string, RepositoryBackend>();
  const log = createLogger("backup-serve");
  for (const d of p.disks) {
    const backend = new RepositoryBackend(await repo.openImage(p, d.name), `${p.id} ${d.name} (${d.kind})`, log);
    disks.set(d.name, onRead ? observeReads(backend, (offset, length) => onRead(d.name, offset, length)) : backend);
  }
  const server = new NbdServer({ provider: new PointExportProvider(disks), log });
  const uris = new Map<string, string>();
  if (options.port !== undefined) {
    const a = await server.listen({ host: "127.0.0.1", port: Number(options.port) });
    if (!("port" in a)) throw new Error("unreachable");
    for (const name of disks.keys()) uris.set(name, formatNbdUri({ tls: false, transport: { kind: "tcp", host: a.host, port: a.port }, exportName: name }));
  } else {
    const path = options.unix ?? join(tmpdir(), `sanbox-backup-${process.pid}-${Date.now()}.sock`);
    await server.listen({ unix: path });
    for (const name of disks.keys()) uris.set(name, formatNbdUri({ tls: false, transport: { kind: "unix", path }, exportName: name }));
  }
  return { server, uris };
}

export function registerRestore(program: Command): Command {
  return program
    .command("restore")
    .description("restore a disk of a backup point to a new raw file, a new array LUN, or (with --force) an existing file, LUN or NBD export; holes stay unallocated")
    .argument("<point>", "point id, unique prefix, or VM@latest")
    .requiredOption("--to <target>", "FILE | NBD-URI | lun:NAME")
    .option("--disk <name>", "which disk (default: the point's only disk; required when it has several)")
    .option("--repo <dir>", "backup repository")
    .option("--threads <n>", THREADS_HELP)
    .option("--array <endpoint>", "array control endpoint for --to lun:NAME")
    .option("--force", "overwrite an existing file, LUN or NBD export (refused without it)")
    .option("--json", "machine-readable output")
    .option("--progress <mode>", PROGRESS_HELP, "auto")
    .action(async (ref: string, options: RepoOpt & { to: string; disk?: string; array?: string; force?: boolean; progress: string }) => {
      const repo = await Repository.open(repoDir(options), storeOpts(options));
      const p = await repo.get(ref);
      let disk = options.disk;
      if (disk === undefined) {
        if (p.disks.length !== 1) throw new InvalidArgumentError(`point ${p.id} has ${p.disks.length} disks; pick one with --disk (${p.disks.map((d) => d.name).join(", ")})`);
        disk = p.disks[0]?.name ?? "";
      }
      const image = await repo.openImage(p, disk);
      const target = parseRestoreTarget(options.to);
      const array = target.kind === "lun" ? GrpcArrayDriver.connect({ endpoint: options.array ?? defaultArrayEndpoint(), ...token() }) : undefined;
      const bar = progressReporter(options);
      try {
        const onProgress = (done: number, total: number): void => bar.update("restore", disk, done, total);
        const log = createLogger("restore");
        const r = await interruptible((signal) => restoreImage(image, target, { onProgress, signal, log, force: options.force === true, ...(array ? { array } : {}) }));
        bar.end();
        print(options, { point: p.id, disk, ...r }, () => `restored ${p.id} ${disk} (${formatSize(r.size)}, ${formatSize(r.bytesWritten)} of data) to ${r.target}\n`);
      } finally {
        bar.end();
        array?.close();
      }
    });
}
