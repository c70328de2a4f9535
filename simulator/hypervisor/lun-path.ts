/**
 * One path from the hypervisor to a LUN: the NBD connection to the export the
 * array presents for it (CreateExport), kept alive across array restarts, with
 * a deadline on every request. The datastore mount and every RDM run on one.
 *
 *              connection breaks                   attempt succeeds
 *   connected ───────────────────▶ reconnecting ─────────────────────▶ connected
 *       ▲                             │ `limit` attempts failed
 *       │   one attempt per request   ▼   (reconnect-policy.ts backoff)
 *       └───────────────────────── failed
 *   any state ──close()──▶ closed
 *
 * Invariants:
 *  - A request in flight when the connection breaks fails (CONNECTION_CLOSED):
 *    NBD cannot tell whether the array executed it. A request made while the
 *    path reconnects waits for the path, within its deadline. A request made on
 *    a FAILED path makes one connection attempt (shared by concurrent requests)
 *    and fails at once with UNAVAILABLE naming the path and the last error if
 *    that attempt fails, so a dead array answers quickly and a returned one is
 *    picked up without a restart of the hypervisor.
 *  - Every reconnection asks the array for the export again: its URI may change
 *    when the array restarts.
 *  - Every request has one deadline (`ioTimeoutMs`) covering the wait for a path
 *    and the request itself; past it the request fails with TIMEOUT. NBD has no
 *    abort, so a write that timed out may still reach the array later.
 *  - `faults` counts the events after which a user's in-memory view of the LUN
 *    may no longer match the array: a broken connection, a change that timed out.
 *    The datastore mount reopens its Datastore when it moved.
 *  - Durability is the connection's: a write is on the array after a flush (or
 *    with FUA), as before, and a flush covers only writes made on its own
 *    connection. So a handle that wrote without flushing before a reconnect gets
 *    CONNECTION_CLOSED from its next flush (once): those writes may be lost, and
 *    a flush that succeeded would claim they were not.
 *
 * Users hold a `PathHandle` (a BlockDevice over the path); revoking a handle
 * fences everything still holding it, so a superseded Datastore cannot write.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { BlockDevice, WriteOptions } from "../../src/block-device.js";
import { ConnectionClosedError, SanboxError, TimeoutError, UnavailableError, errorMessage } from "../../src/errors.js";
import type { Logger } from "../../src/log.js";
import type { NbdClient } from "../../src/nbd/client.js";
import { backoffDelay, checkPolicy, type ReconnectPolicy } from "./reconnect-policy.js";

export type PathState = "connected" | "reconnecting" | "failed" | "closed";

export interface PathStatus {
  name: string;
  state: PathState;
  /** Failed attempts in the current (or last) reconnection cycle. */
  attempts: number;
  /** Why the path last broke or an attempt failed; "" when it never did. */
  lastError: string;
}

export interface LunPathOptions {
  /** The path as messages name it, e.g. `datastore ds (lun/ds)`. */
  name: string;
  /** Asks the array for the export and connects to it, within `timeoutMs`. */
  open: (timeoutMs: number) => Promise<NbdClient>;
  policy: ReconnectPolicy;
  ioTimeoutMs: number;
  log: Logger;
}

/** What a request does with the connection; `signal` aborts at the deadline. */
type Io<T> = (client: NbdClient, signal: AbortSignal) => Promise<T>;

export class LunPath {
  private client: NbdClient;
  private st: PathState = "connected";
  private attempts = 0;
  private lastError = "";
  private faultCount = 0;
  /** Settles when the running reconnection cycle ends (connected or failed). */
  private cycle: Promise<void> | undefined;
  /** The one attempt requests on a FAILED path share. */
  private probe: Promise<NbdClient> | undefined;
  private readonly closing = new AbortController();
  readonly canTrim: boolean;

  private constructor(
    private readonly opts: LunPathOptions,
    first: NbdClient,
  ) {
    checkPolicy(opts.policy);
    this.client = first;
    this.canTrim = first.canTrim && !first.readOnly;
    this.watch(first);
  }

  /** Connects once; a first connection that fails is the caller's error (no retries: nothing was working yet). */
  static async open(opts: LunPathOptions): Promise<LunPath> {
    return new LunPath(opts, await opts.open(opts.ioTimeoutMs));
  }

  get name(): string {
    return this.opts.name;
  }
  get size(): number {
    return this.client.size;
  }
  get state(): PathState {
    return this.st;
  }
  get faults(): number {
    return this.faultCount;
  }
  status(): PathStatus {
    return { name: this.opts.name, state: this.st, attempts: this.attempts, lastError: this.lastError };
  }
  /** The error a request on this FAILED path gets; undefined unless FAILED. */
  failure(): UnavailableError | undefined {
    if (this.st !== "failed") return undefined;
    return new UnavailableError(`${this.opts.name} is down: ${this.attempts} connection attempts failed; last error: ${this.lastError}`);
  }

  /** A new BlockDevice over this path. */
  handle(): PathHandle {
    return new PathHandle(this);
  }

  /** Runs one request under the deadline, on a working connection. */
  async io<T>(what: string, changes: boolean, fn: Io<T>): Promise<T> {
    const ms = this.opts.ioTimeoutMs;
    const deadline = AbortSignal.timeout(ms);
    const client = await this.ready(what, deadline);
    try {
      return await fn(client, deadline);
    } catch (e: unknown) {
      if (deadline.aborted) {
        if (changes) this.faultCount++;
        throw new TimeoutError(`${this.opts.name}: ${what} did not complete within ${ms} ms (--io-timeout)`);
      }
      // A broken connection reaches `watch` too, which starts reconnecting.
      throw e;
    }
  }

  /** Stops reconnecting and closes the connection (requests in flight complete first). */
  async close(): Promise<void> {
    if (this.st === "closed") return;
    this.transition(["connected", "reconnecting", "failed"], "closed");
    this.closing.abort();
    await this.client.close().catch(() => undefined);
  }

  private async ready(what: string, deadline: AbortSignal): Promise<NbdClient> {
    if (this.st === "closed") throw new ConnectionClosedError(`${this.opts.name} is closed`);
    if (this.st === "connected" && this.client.isOpen) return this.client;
    if (this.st === "connected") this.lost(this.client.closedReason ?? new ConnectionClosedError("NBD connection is closed"));
    if (this.st === "failed") {
      this.probe ??= this.attempt(this.opts.ioTimeoutMs).finally(() => (this.probe = undefined));
      try {
        return await this.probe;
      } catch {
        throw this.failure() ?? new ConnectionClosedError(`${this.opts.name} is closed`);
      }
    }
    const cycle = this.cycle;
    if (cycle !== undefined) {
      await Promise.race([cycle, aborted(deadline)]);
      if (deadline.aborted) throw new TimeoutError(`${this.opts.name}: ${what} waited ${this.opts.ioTimeoutMs} ms for the path to come back (--io-timeout); last error: ${this.lastError}`);
    }
    return this.ready(what, deadline);
  }

  /** Notices a broken connection: from here on, requests wait for a reconnection. */
  private watch(client: NbdClient): void {
    client.onFail((e) => {
      if (client === this.client) this.lost(e);
    });
    if (!client.isOpen && client === this.client) this.lost(client.closedReason ?? new ConnectionClosedError("NBD connection is closed"));
  }

  private lost(cause: Error): void {
    if (this.st !== "connected") return;
    this.transition(["connected"], "reconnecting");
    this.faultCount++;
    this.attempts = 0;
    this.lastError = describe(cause);
    this.opts.log.warn(`${this.opts.name}: connection lost (${this.lastError}); reconnecting`);
    this.cycle = this.reconnect().finally(() => (this.cycle = undefined));
  }

  private async reconnect(): Promise<void> {
    const { policy } = this.opts;
    for (let n = 1; n <= policy.limit; n++) {
      try {
        await sleep(backoffDelay(n, policy), undefined, { signal: this.closing.signal });
      } catch {
        return; // closed
      }
      try {
        await this.attempt(this.opts.ioTimeoutMs);
        return;
      } catch {
        // attempt() recorded it
      }
      if (this.st !== "reconnecting") return;
    }
    this.transition(["reconnecting"], "failed");
    this.opts.log.error(`${this.opts.name}: gave up after ${this.attempts} connection attempts; last error: ${this.lastError}`);
  }

  /** One connection attempt; on success the path is connected on it. */
  private async attempt(timeoutMs: number): Promise<NbdClient> {
    let client: NbdClient;
    try {
      client = await this.opts.open(timeoutMs);
    } catch (e: unknown) {
      this.attempts++;
      this.lastError = describe(e);
      this.opts.log.debug(`${this.opts.name}: connection attempt ${this.attempts} failed: ${this.lastError}`);
      throw e;
    }
    if (this.st === "closed") {
      await client.close().catch(() => undefined);
      throw new ConnectionClosedError(`${this.opts.name} is closed`);
    }
    const old = this.client;
    this.client = client;
    old.destroy(new ConnectionClosedError(`${this.opts.name}: superseded by a new connection`));
    this.transition(["reconnecting", "failed"], "connected");
    this.opts.log.warn(`${this.opts.name}: reconnected after ${this.attempts} failed attempt(s)`);
    this.attempts = 0;
    this.watch(client);
    return client;
  }

  /** Guarded transition: an illegal move is a bug, said loudly. */
  private transition(from: readonly PathState[], to: PathState): void {
    if (!from.includes(this.st)) throw new Error(`${this.opts.name}: illegal path transition ${this.st} -> ${to}`);
    this.opts.log.debug(`${this.opts.name}: ${this.st} -> ${to}`);
    this.st = to;
  }
}

/** A BlockDevice over a path until revoked; afterwards every request fails (CONNECTION_CLOSED). */
export class PathHandle implements BlockDevice {
  readonly readOnly = false;
  readonly trim?: (offset: number, length: number) => Promise<void>;
  /** Why the handle was revoked (ends "on a handle that was …"); undefined while it works. */
  private revokedBy: string | undefined;
  /** The connection the oldest unflushed write of this handle went to. */
  private dirtyOn: NbdClient | undefined;

  constructor(private readonly path: LunPath) {
    if (path.canTrim) {
      this.trim = (offset, length) =>
        this.run("trim", true, async (c, signal) => {
          await c.trim(offset, length, { signal });
          this.wrote(c);
        });
    }
  }

  get size(): number {
    return this.path.size;
  }
  get revoked(): boolean {
    return this.revokedBy !== undefined;
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.run("read", false, (c, signal) => c.read(offset, length, { signal }));
  }

  write(offset: number, data: Buffer, opts: WriteOptions = {}): Promise<void> {
    const fua = opts.fua === true;
    return this.run("write", true, async (c, signal) => {
      // As NbdDevice: FUA the server lacks becomes write + flush.
      await c.write(offset, data, { fua: fua && c.canFua, signal });
      if (fua && !c.canFua && c.canFlush) await c.flush({ signal });
      else if (!fua) this.wrote(c);
    });
  }

  flush(): Promise<void> {
    return this.run("flush", true, async (c, signal) => {
      const dirty = this.dirtyOn;
      if (dirty !== undefined && dirty !== c) {
        this.dirtyOn = undefined;
        throw new ConnectionClosedError(`${this.path.name}: writes acknowledged before the path reconnected were not flushed and may be lost`);
      }
      if (c.canFlush) await c.flush({ signal });
      if (this.dirtyOn === c) this.dirtyOn = undefined;
    });
  }

  /** Records an unflushed write on connection `c`; an older connection's unflushed writes stay recorded until a flush reports them. */
  private wrote(c: NbdClient): void {
    this.dirtyOn ??= c;
  }

  /** Fences this handle: what still holds it can no longer reach the LUN. `why` completes "on a handle that was …". */
  revoke(why = "superseded after a path fault"): void {
    this.revokedBy ??= why;
  }

  private run<T>(what: string, changes: boolean, fn: Io<T>): Promise<T> {
    if (this.revokedBy !== undefined) return Promise.reject(new ConnectionClosedError(`${this.path.name}: ${what} on a handle that was ${this.revokedBy}`));
    return this.path.io(what, changes, fn);
  }
}

function describe(e: unknown): string {
  return e instanceof SanboxError ? `${e.code}: ${e.message}` : errorMessage(e);
}

/** Settles (resolves) when `signal` aborts; the caller checks `signal.aborted`. */
function aborted(signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}
