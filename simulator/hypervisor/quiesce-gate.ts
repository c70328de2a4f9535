/**
 * The gate every guest write of a VM passes through, and what quiesce closes.
 *
 *            enter() ──▶ in flight ──leave()──▶
 *   OPEN     passes at once
 *   CLOSED   waits until open() (or until its signal aborts)
 *
 * `close()` only stops new writes; `drained()` resolves once nothing is in
 * flight. Quiesce = close, await drained, flush; resume = open. Both ends are
 * idempotent: closing a closed gate and opening an open one do nothing.
 */
import { CancelledError } from "../../src/errors.js";

export class QuiesceGate {
  private closedFlag = false;
  private active = 0;
  private waiters = new Set<() => void>();
  private idle = new Set<() => void>();

  get closed(): boolean {
    return this.closedFlag;
  }
  get inFlight(): number {
    return this.active;
  }

  /** Waits while the gate is closed, then counts one write in flight. Rejects (CancelledError) if `signal` aborts first. */
  async enter(signal?: AbortSignal): Promise<void> {
    while (this.closedFlag) {
      if (signal?.aborted === true) throw new CancelledError("write cancelled while the VM was quiesced");
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          this.waiters.delete(wake);
          signal?.removeEventListener("abort", wake);
          resolve();
        };
        this.waiters.add(wake);
        signal?.addEventListener("abort", wake, { once: true });
      });
    }
    if (signal?.aborted === true) throw new CancelledError("write cancelled");
    this.active++;
  }

  leave(): void {
    if (this.active === 0) throw new Error("QuiesceGate.leave without enter");
    this.active--;
    if (this.active === 0) for (const f of [...this.idle]) f();
  }

  close(): void {
    this.closedFlag = true;
  }

  open(): void {
    this.closedFlag = false;
    for (const f of [...this.waiters]) f();
  }

  /** Resolves when no write is in flight (at once if none is). */
  drained(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        this.idle.delete(done);
        resolve();
      };
      this.idle.add(done);
    });
  }
}
