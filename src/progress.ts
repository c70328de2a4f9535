/**
 * Progress of long work (backup, restore, export) on stderr, never stdout,
 * which carries only results.
 *
 *   mode   where            what                                     how often
 *   bar    a TTY            one line per phase/item, redrawn in place  ≤ 10×/s
 *   plain  not a TTY        "vm1_1 rdm: 1.2 GiB / 2.0 GiB (60%) …"     every 5 s
 *   json   --progress=json  {"phase","item","done","total","rate","etaSeconds"}  every 1 s
 *   none   --progress=none  nothing
 *   auto   (default)        bar on a TTY, else plain
 *
 * Invariants:
 *  - the renderers are pure functions of a snapshot; the reporter owns the
 *    clock (injected, so tests use a fake one) and the throttling;
 *  - the first update of a phase/item and the one that completes it
 *    (done = total) are always shown; those between are throttled;
 *  - rate is bytes over the last `windowMs` (5 s) of updates, so it follows
 *    the current speed rather than the average since the start; the ETA is
 *    what is left at that rate, or null while the rate is unknown.
 */
import { InvalidArgumentError, quote } from "./errors.js";
import { formatSize } from "./size.js";

export type ProgressMode = "auto" | "bar" | "plain" | "json" | "none";
const MODES: readonly ProgressMode[] = ["auto", "bar", "plain", "json", "none"];

export function parseProgressMode(s: string): ProgressMode {
  const m = MODES.find((x) => x === s);
  if (m === undefined) throw new InvalidArgumentError(`--progress must be one of ${MODES.join(", ")}, got ${quote(s)}`);
  return m;
}

export interface ProgressSnapshot {
  readonly phase: string;
  /** What the phase works on (a disk name); may be "". */
  readonly item: string;
  readonly done: number;
  readonly total: number;
  /** Bytes per second, 0 while unknown. */
  readonly rate: number;
  readonly etaSeconds: number | null;
}

/** Bytes per second over a sliding window of (time, done) samples. */
export class RateMeter {
  private readonly samples: { t: number; done: number }[] = [];
  constructor(private readonly windowMs = 5000) {}

  add(t: number, done: number): void {
    this.samples.push({ t, done });
    // Keep one sample at or before the window's start, so the window is always full once it can be.
    while (this.samples.length > 2 && (this.samples[1] as { t: number }).t <= t - this.windowMs) this.samples.shift();
  }

  rate(): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (first === undefined || last === undefined || last.t <= first.t) return 0;
    return Math.max(0, ((last.done - first.done) * 1000) / (last.t - first.t));
  }
}

export function etaSeconds(done: number, total: number, rate: number): number | null {
  if (done >= total) return 0;
  return rate > 0 ? Math.ceil((total - done) / rate) : null;
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null) return "--:--";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function label(s: ProgressSnapshot): string {
  return s.item === "" ? s.phase : `${s.item} ${s.phase}`;
}

function percent(s: ProgressSnapshot): number {
  return s.total <= 0 ? 100 : Math.min(100, Math.floor((s.done / s.total) * 100));
}

/** One bar line (no newline): `vm1_1 rdm [#####.....]  50% 1.0 GiB / 2.0 GiB 80.0 MiB/s ETA 00:13`. */
export function renderBar(s: ProgressSnapshot, width = 30): string {
  const filled = Math.round((percent(s) / 100) * width);
  const rate = s.rate > 0 ? `${formatSize(Math.round(s.rate))}/s` : "-/s";
  return `${label(s).padEnd(16)} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${String(percent(s)).padStart(3)}% ${formatSize(s.done)} / ${formatSize(s.total)} ${rate} ETA ${formatDuration(s.etaSeconds)}`;
}

/** One plain log line (no newline). */
export function renderPlain(s: ProgressSnapshot): string {
  const rate = s.rate > 0 ? `${formatSize(Math.round(s.rate))}/s` : "rate unknown";
  return `${label(s)}: ${formatSize(s.done)} / ${formatSize(s.total)} (${percent(s)}%), ${rate}, ETA ${formatDuration(s.etaSeconds)}`;
}

/** One JSON line (no newline). */
export function renderJson(s: ProgressSnapshot): string {
  return JSON.stringify({ phase: s.phase, item: s.item, done: s.done, total: s.total, rate: Math.round(s.rate), etaSeconds: s.etaSeconds });
}

export interface ProgressOutput {
  write(text: string): void;
  readonly isTTY?: boolean;
}

export interface ProgressReporterOptions {
  out?: ProgressOutput;
  now?: () => number;
  /** Minimum time between two plain lines (default 5000 ms). */
  plainIntervalMs?: number;
}

const INTERVAL_MS: Record<Exclude<ProgressMode, "auto" | "plain" | "none">, number> = { bar: 100, json: 1000 };

export class ProgressReporter {
  readonly mode: Exclude<ProgressMode, "auto">;
  private readonly out: ProgressOutput;
  private readonly now: () => number;
  private readonly interval: number;
  private key: string | undefined;
  private meter = new RateMeter();
  private lastShown = -Infinity;
  /** A bar line is on screen without its newline. */
  private open = false;

  constructor(mode: ProgressMode, opts: ProgressReporterOptions = {}) {
    this.out = opts.out ?? process.stderr;
    this.now = opts.now ?? Date.now;
    this.mode = mode === "auto" ? (this.out.isTTY === true ? "bar" : "plain") : mode;
    this.interval = this.mode === "plain" ? (opts.plainIntervalMs ?? 5000) : this.mode === "none" ? Infinity : INTERVAL_MS[this.mode];
  }

  /** Reports `done` of `total` bytes for `phase` of `item`. */
  update(phase: string, item: string, done: number, total: number): void {
    if (this.mode === "none") return;
    const t = this.now();
    const key = `${item}\0${phase}`;
    const first = key !== this.key;
    if (first) {
      this.key = key;
      this.meter = new RateMeter();
      if (this.open) this.out.write("\n");
      this.open = false;
    }
    this.meter.add(t, done);
    const finished = done >= total;
    if (!first && !finished && t - this.lastShown < this.interval) return;
    this.lastShown = t;
    const rate = this.meter.rate();
    const snap: ProgressSnapshot = { phase, item, done, total, rate, etaSeconds: etaSeconds(done, total, rate) };
    if (this.mode === "bar") {
      this.out.write(`\r${renderBar(snap)}\x1b[K`);
      this.open = true;
      if (finished) {
        this.out.write("\n");
        this.open = false;
        this.key = undefined;
      }
    } else {
      this.out.write(`${this.mode === "json" ? renderJson(snap) : renderPlain(snap)}\n`);
      if (finished) this.key = undefined;
    }
  }

  /** Ends an open bar line (call before printing anything else to stderr). */
  end(): void {
    if (this.open) this.out.write("\n");
    this.open = false;
    this.key = undefined;
  }
}
