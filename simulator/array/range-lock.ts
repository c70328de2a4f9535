/**
 * Per-volume block range lock: overlapping writes run in arrival order, disjoint
 * ones run concurrently. Each acquirer waits only for earlier overlapping holders,
 * so there is no deadlock. O(active requests) per acquire (the NBD queue depth).
 */
interface Held {
  start: number;
  end: number;
  done: Promise<void>;
}

export class RangeLock {
  private held: Held[] = [];

  async acquire(start: number, end: number): Promise<() => void> {
    const waitFor = this.held.filter((h) => h.start < end && start < h.end).map((h) => h.done);
    let release!: () => void;
    const me: Held = { start, end, done: new Promise<void>((r) => (release = r)) };
    this.held.push(me);
    if (waitFor.length > 0) await Promise.all(waitFor);
    return () => {
      this.held = this.held.filter((h) => h !== me);
      release();
    };
  }
}
