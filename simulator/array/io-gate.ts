/**
 * Write fence of one LUN (RBD's block_requests + drain, ANCHORS 2.4).
 * Mutating I/O enters the gate; `fence()` stops new entries and resolves once
 * every write already inside has finished, so a snapshot cut taken while fenced
 * holds exactly the writes acknowledged before it. `unfence()` lets waiters in.
 */
export class IoGate {
  private inflight = 0;
  private fenceP: Promise<void> | null = null;
  private openFence: (() => void) | null = null;
  private drained: (() => void)[] = [];

  async enter(): Promise<void> {
    while (this.fenceP) await this.fenceP;
    this.inflight++;
  }

  exit(): void {
    this.inflight--;
    if (this.inflight === 0) {
      const d = this.drained;
      this.drained = [];
      for (const r of d) r();
    }
  }

  /** Callers serialise fences (the store's management lock); nested fences are not supported. */
  async fence(): Promise<void> {
    if (this.fenceP) throw new Error("IoGate: already fenced");
    this.fenceP = new Promise<void>((r) => (this.openFence = r));
    if (this.inflight > 0) await new Promise<void>((r) => this.drained.push(r));
  }

  unfence(): void {
    const open = this.openFence;
    this.fenceP = null;
    this.openFence = null;
    open?.();
  }
}

/** A plain async mutex (management operations run one at a time). */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let done!: () => void;
    this.tail = new Promise<void>((r) => (done = r));
    await prev;
    try {
      return await fn();
    } finally {
      done();
    }
  }
}
