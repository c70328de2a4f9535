/**
 * Space figures for the RBD backend: each LUN's and snapshot's `allocatedBytes`
 * and the pool's used bytes, which ArrayService reports synchronously while
 * every answer from Ceph costs a CLI call (0.05–0.5 s, and O(objects) for the
 * figures below). So they are kept in a cache that a background pass refreshes.
 *
 *  - A LUN's or snapshot's allocated bytes are what `rbd diff --whole-object`
 *    lists as existing in that image or snapshot: the data visible in it,
 *    shared objects included, at object granularity, the same meaning as the
 *    local store's (backend.ts). Snapshots never change, so they are measured
 *    once; a LUN again after it was written, reverted or resized.
 *  - The pool's used bytes are `rbd du`'s total used size over the pool: what
 *    the images and snapshots hold, before replication. `ceph df` would say
 *    more but needs a mgr, which this backend does not require (docs/rbd.md).
 *
 * Invariants: a figure is never invented — until its first measurement a key
 * reads as 0, and a failed or timed-out pass keeps the previous figures (logged
 * at debug). One pass runs at a time; marks that arrive during a pass are kept
 * for the next one. The timer is unref'd. close() stops it, kills the `rbd`
 * child of a pass in flight and waits for that pass, so a closing daemon leaves
 * no child behind and is not kept waiting for an O(objects) measurement.
 */
import type { Logger } from "../../../src/log.js";
import type { RbdCli } from "./rbd-cli.js";

/** What to measure: a live image (`snap` undefined) or one of its snapshots. */
export interface UsageTarget {
  image: string;
  snap?: string;
}

/**
 * Delay from the first mark to its pass. Marks in between join the same pass (a
 * burst of writes costs one), and under steady writes a LUN is measured about
 * every SETTLE_MS plus the pass itself, not once per write.
 */
const SETTLE_MS = 2000;

export class RbdUsage {
  private readonly allocated = new Map<string, number>();
  private readonly dirty = new Map<string, UsageTarget>();
  private poolUsed = 0;
  private poolDirty = true;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  private readonly abort = new AbortController();

  constructor(
    private readonly cli: RbdCli,
    private readonly log: Logger,
  ) {}

  /** Bytes allocated in the LUN or snapshot `key` as last measured (0 before the first pass). */
  allocatedBytes(key: string): number {
    return this.allocated.get(key) ?? 0;
  }

  /** The pool's used bytes as last measured. */
  usedBytes(): number {
    return this.poolUsed;
  }

  /** `key` changed (or is new): measure it in the next pass. */
  mark(key: string, target: UsageTarget): void {
    if (this.closed) return;
    this.dirty.set(key, target);
    this.poolDirty = true;
    this.schedule();
  }

  /** `key` is gone: drop its figure; the pool figure is measured again. */
  forget(key: string): void {
    this.allocated.delete(key);
    this.dirty.delete(key);
    this.poolDirty = true;
    this.schedule();
  }

  /** Runs a pass now if anything is marked and waits for it (tests, and callers that want fresh figures). */
  async settle(): Promise<void> {
    if (this.running) await this.running;
    if (this.dirty.size > 0 || this.poolDirty) await this.pass();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.abort.abort();
    await this.running;
  }

  private schedule(): void {
    if (this.closed || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.pass();
    }, SETTLE_MS);
    this.timer.unref();
  }

  private pass(): Promise<void> {
    if (this.running) return this.running;
    this.running = this.measure().finally(() => {
      this.running = undefined;
      if (!this.closed && (this.dirty.size > 0 || this.poolDirty)) this.schedule();
    });
    return this.running;
  }

  private async measure(): Promise<void> {
    const batch = [...this.dirty.entries()];
    this.dirty.clear();
    const measurePool = this.poolDirty;
    this.poolDirty = false;
    for (const [key, t] of batch) {
      if (this.closed) return;
      try {
        const v = await this.cli.json("rbd", ["diff", "--whole-object", this.cli.spec(t.image, t.snap)], "measure allocation", { signal: this.abort.signal });
        this.allocated.set(key, existingBytes(v));
      } catch (e) {
        this.log.debug(`allocation of ${this.cli.spec(t.image, t.snap)} not measured: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (!measurePool || this.closed) return;
    try {
      this.poolUsed = totalUsed(await this.cli.json("rbd", ["du", "-p", this.cli.pool], "measure pool usage", { signal: this.abort.signal }));
    } catch (e) {
      this.log.debug(`pool usage not measured: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

/** Sum of the lengths `rbd diff --format json` lists as existing. */
export function existingBytes(v: unknown): number {
  if (!Array.isArray(v)) return 0;
  let sum = 0;
  for (const e of v as unknown[]) {
    if (typeof e !== "object" || e === null) continue;
    const r = e as { length?: unknown; exists?: unknown };
    if (typeof r.length === "number" && (r.exists === true || r.exists === "true")) sum += r.length;
  }
  return sum;
}

/** `total_used_size` of `rbd du --format json`, 0 when absent. */
export function totalUsed(v: unknown): number {
  if (typeof v !== "object" || v === null) return 0;
  const t = (v as { total_used_size?: unknown }).total_used_size;
  return typeof t === "number" && Number.isFinite(t) && t >= 0 ? t : 0;
}
