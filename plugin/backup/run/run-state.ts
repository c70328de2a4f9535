/**
 * The state of one backup run that its phases share: who it talks to, the
 * settings, the clock of the phase durations, and what it holds on the array,
 * the hypervisor and the repository until it ends. Everything a phase
 * *produces* (layouts, snapshots, images) is its return value, not state here.
 *
 * Invariants:
 *  - `held` lists exactly what cleanup must release: every snapshot this run
 *    made and has not handed over to a committed point, every export it opened,
 *    every reader it keeps past one phase (a phase that closes a reader in its
 *    own `finally` does not list it), the uncommitted point, and whether the VM
 *    is quiesced. A phase records a resource here as soon as it exists, before
 *    anything else can fail, so no exit path leaks it.
 *  - The committed point owns its S1 (it is the next run's base): commit takes
 *    S1 out of `held.snapshots`, so cleanup deletes only S2.
 *  - Phases run in order and each is timed once, under its name, by runPhase;
 *    the test-only stops that coincide with a phase boundary are called there
 *    (STOP_AFTER), so they halt between two phases and never inside one.
 *  - `signal` (the CLI aborts it at SIGINT/SIGTERM) stops the run from
 *    starting anything new: runPhase checks it before each phase, `retry`
 *    before each attempt, and the copies before each read. Cleanup never
 *    looks at it: after a stop it still deletes, resumes and releases all.
 */
import { stopAt, type StopName } from "../../../src/failpoints.js";
import { silentLogger, type Logger } from "../../../src/log.js";
import type { HypervisorApi } from "../../../src/rpc/hypervisor-service-def.js";
import type { ArrayDriver, SnapshotSet } from "../array-driver.js";
import type { CopyOptions } from "../copy-extents.js";
import { ExportReader } from "../export-reader.js";
import type { PendingPoint, Repository } from "../repository/repository.js";
import { withRetry } from "../retry.js";

export type HypervisorPort = Pick<HypervisorApi, "getVm" | "quiesceVm" | "resumeVm">;

/** What runBackup is asked to do (its public options; backup-run.ts re-exports them). */
export interface BackupRunOptions {
  vm: string;
  repo: Repository;
  array: ArrayDriver;
  hypervisor: HypervisorPort;
  /** Test-only: skip the revert (DESIGN.md step 5). The point is then NOT time-consistent; the negative control uses it. */
  revert?: boolean;
  /** Force a full backup even when a base exists. */
  full?: boolean;
  quiesceTimeoutMs?: number;
  /** Times S1 is dropped and retaken when the layout changed under it (default 3). */
  layoutRetries?: number;
  parallel?: number;
  log?: Logger;
  /** Progress per disk in bytes. */
  onProgress?: (disk: string, phase: string, done: number, total: number) => void;
  /** Aborted: stop starting new work, clean up, and reject with the signal's reason (an InterruptedError at the CLI). */
  signal?: AbortSignal;
}

/** Something cleanup closes (an ExportReader; a fake in tests). */
export interface Closable {
  close(): Promise<void>;
}

/** What the run holds and cleanup releases (see the invariants above). */
export interface Held {
  snapshots: SnapshotSet[];
  exports: string[];
  readers: Closable[];
  pending: Pick<PendingPoint, "id" | "abandon"> | undefined;
  quiesced: boolean;
}

export type PhaseName = "discover" | "t1" | "rdm" | "t2" | "vmdk" | "revert" | "finish" | "commit" | "cleanup";

/**
 * The stops (src/failpoints.ts) that fall on a phase boundary: the run halts
 * right after the named phase. "in-quiesce" is not a boundary (it is inside
 * the T2 window, which must end with a resume) and is called by cutT2 itself.
 */
export const STOP_AFTER: Readonly<Partial<Record<PhaseName, StopName>>> = { t1: "after-s1", t2: "after-s2", finish: "before-commit" };

export interface RunState {
  readonly vm: string;
  readonly repo: Repository;
  readonly array: ArrayDriver;
  readonly hypervisor: HypervisorPort;
  readonly log: Logger;
  /** false only for the negative control: the VMDK images then keep T2 content. */
  readonly revert: boolean;
  readonly full: boolean;
  readonly quiesceTimeoutMs: number;
  readonly layoutRetries: number;
  readonly parallel: number | undefined;
  readonly onProgress: BackupRunOptions["onProgress"];
  readonly signal: AbortSignal | undefined;
  /** Unique per run, so S1/S2 names of two runs never collide. */
  readonly runId: string;
  /** Milliseconds per phase, in order; the same object ends up in the point and the summary. */
  readonly durations: Record<string, number>;
  /** When the current phase started (the first one: when the run was created, so it includes taking the lock). */
  phaseStart: number;
  readonly held: Held;
  /** What cleanup released, in words ("snapshot …", "export …", "unfinished point tmp/…"). */
  readonly released: string[];
  /** Halts at a test-only stop; stopAt in production (released by `signal`), a recorder in unit tests. */
  readonly stop: (name: StopName) => Promise<void>;
}

export function createRunState(settings: BackupRunOptions, stop: (name: StopName) => Promise<void> = (name) => stopAt(name, settings.signal)): RunState {
  return {
    vm: settings.vm,
    repo: settings.repo,
    array: settings.array,
    hypervisor: settings.hypervisor,
    log: settings.log ?? silentLogger,
    revert: settings.revert ?? true,
    full: settings.full === true,
    quiesceTimeoutMs: settings.quiesceTimeoutMs ?? 10_000,
    layoutRetries: settings.layoutRetries ?? 3,
    parallel: settings.parallel,
    onProgress: settings.onProgress,
    signal: settings.signal,
    runId: `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`,
    durations: {},
    phaseStart: Date.now(),
    held: { snapshots: [], exports: [], readers: [], pending: undefined, quiesced: false },
    released: [],
    stop,
  };
}

/** Runs one phase, records its duration under its name, then halts if a stop sits on this boundary. */
export async function runPhase<T>(run: RunState, name: PhaseName, phase: () => Promise<T>): Promise<T> {
  // "cleanup" runs after a commit: a stop that arrives then must not leave the superseded base behind.
  if (name !== "cleanup") run.signal?.throwIfAborted();
  const out = await phase();
  const now = Date.now();
  run.durations[name] = now - run.phaseStart;
  run.phaseStart = now;
  const stop = STOP_AFTER[name];
  if (stop !== undefined) await run.stop(stop);
  return out;
}

/** `fn` with the run's retry policy for transient array and hypervisor failures; a stop ends the retrying. */
export function retry<T>(run: RunState, what: string, fn: () => Promise<T>): Promise<T> {
  return withRetry(what, fn, { log: run.log, ...(run.signal !== undefined ? { signal: run.signal } : {}) });
}

/** Exports a snapshot for reading; the export is held until cleanup. Returns its NBD URI. */
export async function openSnapshotExport(run: RunState, snapshotId: string): Promise<string> {
  const handle = await retry(run, "create export", () => run.array.exportSnapshot(snapshotId));
  run.held.exports.push(handle.id);
  return handle.uri;
}

/** A reader over `uri` that cleanup closes. */
export async function openHeldReader(run: RunState, uri: string): Promise<ExportReader> {
  const reader = await ExportReader.open(uri, { log: run.log });
  run.held.readers.push(reader);
  return reader;
}

/** copyExtents options for one disk in one phase: the run's parallelism, progress reported under (disk, phase). */
export function copyOptions(run: RunState, disk: string, phase: string): CopyOptions {
  const out: CopyOptions = {};
  if (run.parallel !== undefined) out.parallel = run.parallel;
  if (run.signal !== undefined) out.signal = run.signal;
  const report = run.onProgress;
  if (report) out.onProgress = (done, total) => report(disk, phase, done, total);
  return out;
}
