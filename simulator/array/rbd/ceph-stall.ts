/**
 * Why a call into Ceph is not returning, and a deadline for it (docs/rbd.md
 * "Faults").
 *
 * librados does not fail a write to a full pool or to a PG whose OSD is gone: it
 * pauses the op until the OSD map changes (the pool is no longer full, the OSD is
 * back). So does every `rbd` command and qemu-nbd's librbd behind our export. The
 * array must not hang with it, so every call into Ceph that can block runs under
 * `boundCall`:
 *  - after `probeMs` (and again every `probeMs`) the OSD map is read
 *    (`ceph osd dump`, its own short deadline, never probed itself): a full pool or
 *    cluster (pool flags `full`/`full_quota`, an OSD in state `full`) ends the call
 *    with NoSpaceError; an OSD marked down ends it with the caller's "down" error
 *    (EIO for the data path, UNAVAILABLE for management);
 *  - at `deadlineMs` the call ends with the same classification, or TimeoutError
 *    when the map shows nothing wrong (a single OSD killed with nobody to report it
 *    stays "up" in the map for the mon's report timeout, 900 s by default).
 * Ending a call early does not undo it: a paused librados op still runs once Ceph
 * can take it. The caller decides what ending means (the CLI child is killed; an
 * NBD request keeps its I/O gate entry until qemu-nbd answers, rbd-volume.ts).
 */
import { NoSpaceError, SanboxError, TimeoutError } from "../../../src/errors.js";
import type { RbdCli } from "./rbd-cli.js";

export type Blocker = { kind: "full"; message: string } | { kind: "down"; message: string };

interface OsdDump {
  flags?: unknown;
  osds?: unknown;
  pools?: unknown;
}

function words(v: unknown): string[] {
  if (typeof v === "string") return v.split(",").filter((w) => w !== "");
  if (Array.isArray(v)) return v.filter((w): w is string => typeof w === "string");
  return [];
}

/** What in an OSD map (`ceph osd dump --format json`) blocks writes to `pool`; undefined if nothing. */
export function blockerOf(dump: unknown, pool: string): Blocker | undefined {
  if (typeof dump !== "object" || dump === null) return undefined;
  const d = dump as OsdDump;
  if (words(d.flags).includes("full")) return { kind: "full", message: "the Ceph cluster is full (OSD map flag full)" };
  const pools = Array.isArray(d.pools) ? (d.pools as unknown[]) : [];
  for (const p of pools) {
    if (typeof p !== "object" || p === null) continue;
    const r = p as { pool_name?: unknown; flags_names?: unknown };
    if (r.pool_name !== pool) continue;
    const f = words(r.flags_names);
    if (f.includes("full_quota")) return { kind: "full", message: `pool "${pool}" is at its quota (ceph osd pool set-quota)` };
    if (f.includes("full")) return { kind: "full", message: `pool "${pool}" is full (an OSD reached the full ratio)` };
  }
  const osds = Array.isArray(d.osds) ? (d.osds as unknown[]) : [];
  const down: string[] = [];
  for (const o of osds) {
    if (typeof o !== "object" || o === null) continue;
    const r = o as { osd?: unknown; up?: unknown; in?: unknown; state?: unknown };
    if (words(r.state).includes("full")) return { kind: "full", message: `osd.${String(r.osd)} is full` };
    if (r.up === 0 && r.in === 1) down.push(`osd.${String(r.osd)}`);
  }
  if (down.length > 0) return { kind: "down", message: `${down.join(", ")} down` };
  return undefined;
}

/** What boundCall asks when a call is slow. */
export interface HealthProbe {
  blocker(): Promise<Blocker | undefined>;
}

/** The OSD map, asked at most once per `cacheMs` (concurrent askers share one call). */
export class CephHealth implements HealthProbe {
  private last: { at: number; blocker: Blocker | undefined } | undefined;
  private pending: Promise<Blocker | undefined> | undefined;

  constructor(
    private readonly cli: RbdCli,
    private readonly timeoutMs = 3_000,
    private readonly cacheMs = 1_000,
  ) {}

  /** Undefined when the map shows nothing wrong or cannot be read in time (the caller's deadline still holds). */
  blocker(): Promise<Blocker | undefined> {
    if (this.last && Date.now() - this.last.at < this.cacheMs) return Promise.resolve(this.last.blocker);
    this.pending ??= this.cli
      .json("ceph", ["osd", "dump"], "read the OSD map", { timeoutMs: this.timeoutMs, probe: false })
      .then(
        (v) => blockerOf(v, this.cli.pool),
        () => undefined,
      )
      .then((b) => {
        this.last = { at: Date.now(), blocker: b };
        this.pending = undefined;
        return b;
      });
    return this.pending;
  }
}

export interface BoundOptions {
  health: HealthProbe;
  probeMs: number;
  deadlineMs: number;
  /** The error for an OSD that is down (EIO on the data path, UNAVAILABLE for management). */
  down: (message: string) => SanboxError;
  /** Called when the call is ended early (kill the child, …). */
  onEnd?: () => void;
}

function classify(what: string, b: Blocker, o: BoundOptions): SanboxError {
  return b.kind === "full" ? new NoSpaceError(`${what}: ${b.message}`) : o.down(`${what}: ${b.message}`);
}

/** Waits for `work`, but at most `deadlineMs`, ending it early when the OSD map says it is blocked. */
export function boundCall<T>(what: string, work: Promise<T>, o: BoundOptions): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const t0 = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const end = (e: SanboxError): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      o.onEnd?.();
      reject(e);
    };
    const probe = (): void => {
      timer = undefined;
      void o.health.blocker().then((b) => {
        if (done) return;
        const left = o.deadlineMs - (Date.now() - t0);
        if (b !== undefined) end(classify(what, b, o));
        else if (left <= 0) end(new TimeoutError(`${what}: Ceph did not answer within ${o.deadlineMs} ms (the OSD map shows no full pool and no OSD down)`));
        else timer = setTimeout(probe, Math.min(o.probeMs, left));
      });
    };
    timer = setTimeout(probe, Math.min(o.probeMs, o.deadlineMs));
    work.then(
      (v) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
