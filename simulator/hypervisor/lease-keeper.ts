/**
 * Keeps a mounted datastore's writer lease (src/datastore/lease.ts) on its own
 * path handle: a heartbeat every T/4, and a fence at the instant the lease
 * stops being valid (T/2 after the last heartbeat that reached the LUN).
 *
 * Invariants:
 *  - The mount writes only while the lease is valid: `onFence` runs when it
 *    expires (the array did not take a heartbeat in time: it is frozen, down, or
 *    unreachable) or is found lost (another host holds it); the mount then
 *    revokes its datastore handle, so nothing writes with a lease it may no
 *    longer hold.
 *  - `ensure()` renews an invalid lease before the mount hands out its
 *    Datastore again: after an array restart the record still names us and we
 *    take it again at once; if another host took it meanwhile, it fails
 *    naming that host.
 *  - One heartbeat at a time: a slow one (waiting for a reconnecting path) is
 *    not stacked; the fence timer does not wait for it.
 */
import { DatastoreLease, type LeaseHolder } from "../../src/datastore/lease.js";
import { SanboxError, errorMessage } from "../../src/errors.js";
import type { Logger } from "../../src/log.js";
import type { PathHandle } from "./lun-path.js";

/** Who the hypervisor is on the lease, and its timing. */
export interface LeaseSettings {
  holder: LeaseHolder;
  timeoutMs: number;
  /** Wait between writing our record and reading it back (the race check). */
  settleMs: number;
}

export class LeaseKeeper {
  private readonly lease: DatastoreLease;
  private beat: Promise<void> | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private fenceTimer: NodeJS.Timeout | undefined;
  /** Why the last renewal failed; "" when it did not. */
  private lastError = "";
  /** Fenced since the lease was last valid (one fence per lapse). */
  private fenced = false;
  private stopped = false;

  constructor(
    device: PathHandle,
    resource: string,
    private readonly name: string,
    settings: LeaseSettings,
    private readonly onFence: (why: string) => void,
    private readonly log: Logger,
  ) {
    this.lease = new DatastoreLease({ device, resource, what: name, holder: settings.holder, timeoutMs: settings.timeoutMs, settleMs: settings.settleMs });
  }

  get valid(): boolean {
    return this.lease.valid;
  }

  /** Takes the lease (FAILED_PRECONDITION naming the holder when another host has it), then keeps it. */
  async take(): Promise<void> {
    await this.lease.acquire();
    this.armFence();
    this.log.info(`${this.name}: writer lease taken (timeout ${this.lease.timeoutMs} ms)`);
  }

  /** Heartbeats every T/4, until the lease is lost to another host (then only `ensure()` tries again). */
  private startHeartbeats(): void {
    if (this.heartbeatTimer !== undefined || this.stopped) return;
    this.heartbeatTimer = setInterval(() => void this.renew().catch(() => undefined), Math.max(1, Math.floor(this.lease.timeoutMs / 4)));
    this.heartbeatTimer.unref();
  }

  private stopHeartbeats(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  /** The lease is valid when this resolves; renews it first if needed. */
  async ensure(): Promise<void> {
    if (this.lease.valid) return;
    await this.renew();
  }

  /** Stops heartbeating; with `release`, gives the lease up on the LUN (a clean unmount). */
  async stop(release: boolean): Promise<void> {
    this.stopped = true;
    this.stopHeartbeats();
    clearTimeout(this.fenceTimer);
    await this.beat?.catch(() => undefined);
    if (release) await this.lease.release();
  }

  /** One heartbeat (a full take when the lease had expired), shared by concurrent callers. */
  private renew(): Promise<void> {
    if (this.stopped) return Promise.reject(new Error(`${this.name}: unmounted`));
    this.beat ??= this.lease
      .heartbeat()
      .then(() => {
        if (this.lastError !== "") this.log.warn(`${this.name}: writer lease renewed after: ${this.lastError}`);
        this.lastError = "";
        this.armFence();
      })
      .catch((e: unknown) => {
        this.lastError = e instanceof SanboxError ? `${e.code}: ${e.message}` : errorMessage(e);
        // Lost to another host: stop writing now, and stop trying on our own. An I/O failure
        // (the array is frozen or down): keep trying; the fence timer stops the writes in time.
        if (e instanceof SanboxError && e.code === "FAILED_PRECONDITION") {
          this.stopHeartbeats();
          this.fence(e.message);
        } else this.log.warn(`${this.name}: writer lease heartbeat failed: ${this.lastError}`);
        throw e;
      })
      .finally(() => (this.beat = undefined));
    return this.beat;
  }

  /** After a heartbeat reached the LUN: the fence moves to the new end of validity. */
  private armFence(): void {
    clearTimeout(this.fenceTimer);
    const until = this.lease.validUntil;
    if (until === undefined || this.stopped) return;
    this.fenced = false;
    this.startHeartbeats();
    this.fenceTimer = setTimeout(() => {
      if (!this.lease.valid) this.fence(`the writer lease expired: no heartbeat reached the LUN for ${this.lease.timeoutMs / 2} ms${this.lastError !== "" ? ` (last error: ${this.lastError})` : ""}`);
    }, Math.max(0, until - Date.now()));
    this.fenceTimer.unref();
  }

  private fence(why: string): void {
    if (this.fenced) return;
    this.fenced = true;
    this.log.error(`${this.name}: fenced: ${why}`);
    this.onFence(why);
  }
}
