/**
 * A VM's guest: runs the dependent-write workload on the VM's disks, one
 * operation at a time, each started only after the previous one was
 * acknowledged (src/oracle: Workload generates, applyOp performs, Journal
 * records the acknowledged prefix). Every operation passes the QuiesceGate.
 *
 *   stopped ──start──▶ running ──stop──▶ stopped
 *                         │ an operation failed
 *                         ▼
 *                       failed ──start──▶ running (a new chain)
 *
 * Quiesce is orthogonal to that state: it closes the gate (a running workload
 * then waits before its next operation), waits for the operation in flight, and
 * flushes every disk; resume opens the gate.
 *
 * A stopped chain can be continued (start without a seed, or with the same
 * seed): the generator and journal are kept, so the disks keep holding one
 * chain the oracle can judge. A new seed, or a failed chain, starts a new chain
 * at sequence 1; stamps of the old chain still on the disks then read as
 * foreign to the oracle.
 */
import { setImmediate as nextTick, setTimeout as sleep } from "node:timers/promises";
import { FailedPreconditionError, SanboxError, TimeoutError, errorMessage } from "../../src/errors.js";
import type { Logger } from "../../src/log.js";
import { Journal, Workload, applyOp, type DiskTarget, type WorkloadDisk } from "../../src/oracle/index.js";
import { QuiesceGate } from "./quiesce-gate.js";

/** The VM's disks opened for guest I/O (by the hypervisor), in workload disk order. */
export interface VmIo {
  disks: WorkloadDisk[];
  targets: DiskTarget[];
  /** Makes every acknowledged write durable: datastore commit + NBD flush of every disk. */
  flush(): Promise<void>;
  close(): Promise<void>;
  /**
   * Why the disks can no longer be trusted (a path to the array broke or a write
   * timed out since they were opened: acknowledged writes may be lost), else
   * undefined. Checked before every operation: the chain must not go on past it.
   */
  fault?(): Error | undefined;
}

export type RuntimeState = "stopped" | "running" | "failed";

export interface RuntimeStatus {
  state: RuntimeState;
  workload: string;
  seed: number;
  rate: number;
  acknowledgedSeq: number;
  quiesced: boolean;
  error: string;
  writes: number;
  trims: number;
  grows: number;
}

export interface StartOptions {
  seed?: number;
  /** Operations per second; 0 = as fast as acknowledged. */
  rate: number;
  openIo(): Promise<VmIo>;
}

export class VmRuntime {
  readonly gate = new QuiesceGate();
  private state: RuntimeState = "stopped";
  private workload: Workload | undefined;
  private journal: Journal | undefined;
  private rate = 0;
  private error = "";
  private counts = { writes: 0, trims: 0, grows: 0 };
  private io: VmIo | undefined;
  private loop: Promise<void> | undefined;
  private abort: AbortController | undefined;
  private quiescedFlag = false;
  private quiescing: Promise<void> | undefined;
  private epoch = 0;
  /** Serialises start/stop. */
  private control: Promise<unknown> = Promise.resolve();

  constructor(
    readonly vm: string,
    private readonly log: Logger,
    /** Flushes the datastore when no workload has the disks open. */
    private readonly flushIdle: () => Promise<void>,
  ) {}

  get running(): boolean {
    return this.state === "running";
  }

  status(): RuntimeStatus {
    return {
      state: this.state,
      workload: this.workload !== undefined ? "dependent" : "",
      seed: this.workload?.spec.seed ?? 0,
      rate: this.rate,
      acknowledgedSeq: this.journal?.lastSeq ?? 0,
      quiesced: this.quiescedFlag,
      error: this.error,
      ...this.counts,
    };
  }

  /** The journal of the current chain (tests, and the oracle's horizon). */
  get chain(): Journal | undefined {
    return this.journal;
  }

  start(opts: StartOptions): Promise<RuntimeStatus> {
    return this.serial(async () => {
      if (this.state === "running") {
        if (opts.seed !== undefined && opts.seed >>> 0 !== this.workload?.spec.seed) throw new FailedPreconditionError(`VM ${this.vm} already runs a workload with seed ${this.workload?.spec.seed ?? 0}`);
        this.rate = opts.rate;
        return this.status();
      }
      await this.closeIo().catch(() => undefined); // a failed chain's disks
      const io = await opts.openIo();
      const continueChain = this.state === "stopped" && this.workload !== undefined && (opts.seed === undefined || opts.seed >>> 0 === this.workload.spec.seed);
      if (!continueChain || this.workload === undefined || this.journal === undefined) {
        const seed = opts.seed ?? Math.floor(Math.random() * 0x1_0000_0000);
        this.workload = new Workload({ seed, vm: this.vm, disks: io.disks });
        this.journal = new Journal(this.workload);
        this.counts = { writes: 0, trims: 0, grows: 0 };
      }
      this.io = io;
      this.rate = opts.rate;
      this.error = "";
      this.state = "running";
      const abort = new AbortController();
      this.abort = abort;
      this.loop = this.run(this.workload, this.journal, io, abort.signal);
      this.log.info(`VM ${this.vm}: workload ${continueChain ? "continues" : "starts"} (seed ${this.workload.spec.seed}, rate ${opts.rate === 0 ? "unlimited" : `${opts.rate}/s`}) at sequence ${this.journal.lastSeq}`);
      return this.status();
    });
  }

  stop(): Promise<RuntimeStatus> {
    return this.serial(async () => {
      this.abort?.abort();
      await this.loop;
      this.loop = undefined;
      this.abort = undefined;
      await this.closeIo();
      if (this.state === "running") this.state = "stopped";
      return this.status();
    });
  }

  /**
   * New writes wait, the write in flight completes, every disk is flushed. Idempotent;
   * concurrent calls share one drain. On timeout (or any failure) the VM is resumed.
   */
  quiesce(timeoutMs: number): Promise<void> {
    if (this.quiescedFlag) return Promise.resolve();
    if (this.quiescing !== undefined) return this.quiescing;
    const epoch = ++this.epoch;
    this.gate.close();
    const work = (async (): Promise<void> => {
      await this.gate.drained();
      if (this.io !== undefined) await this.io.flush();
      else await this.flushIdle();
    })();
    const timer = new AbortController();
    const p = Promise.race([
      work,
      sleep(timeoutMs, undefined, { signal: timer.signal }).then(() => {
        throw new TimeoutError(`VM ${this.vm}: quiesce did not drain and flush within ${timeoutMs} ms; resumed`);
      }),
    ])
      .then(() => {
        if (epoch !== this.epoch) throw new SanboxError("ABORTED", `VM ${this.vm}: resumed while quiescing`);
        this.quiescedFlag = true;
        this.log.info(`VM ${this.vm}: quiesced at sequence ${this.journal?.lastSeq ?? 0}`);
      })
      .catch((e: unknown) => {
        if (epoch === this.epoch) this.gate.open();
        this.log.warn(`VM ${this.vm}: quiesce failed: ${errorMessage(e)}`);
        throw e;
      })
      .finally(() => {
        timer.abort();
        if (epoch === this.epoch) this.quiescing = undefined;
      });
    // A late completion of `work` after a timeout must not be an unhandled rejection.
    work.catch(() => undefined);
    this.quiescing = p;
    return p;
  }

  /** Releases waiting writes. Idempotent; cancels a quiesce still draining. */
  resume(): void {
    this.epoch++;
    this.quiescing = undefined;
    const was = this.quiescedFlag;
    this.quiescedFlag = false;
    this.gate.open();
    if (was) this.log.info(`VM ${this.vm}: resumed at sequence ${this.journal?.lastSeq ?? 0}`);
  }

  private async run(w: Workload, j: Journal, io: VmIo, signal: AbortSignal): Promise<void> {
    let due = performance.now();
    try {
      while (!signal.aborted) {
        try {
          await this.gate.enter(signal);
        } catch {
          break; // stopped while quiesced
        }
        try {
          const fault = io.fault?.();
          if (fault !== undefined) throw fault;
          const op = w.next();
          await applyOp(w, op, io.targets);
          j.ack(op);
          if (op.kind === "write") this.counts.writes++;
          else if (op.kind === "trim") this.counts.trims++;
          else this.counts.grows++;
        } finally {
          this.gate.leave();
        }
        if (this.rate > 0) {
          due += 1000 / this.rate;
          const wait = due - performance.now();
          if (wait > 0) await sleep(wait, undefined, { signal }).catch(() => undefined);
          else if (wait < -1000) due = performance.now();
        } else if (j.lastSeq % 64 === 0) {
          await nextTick(); // a device that answers in microtasks must not starve the event loop
        }
      }
    } catch (e: unknown) {
      this.state = "failed";
      this.error = errorMessage(e);
      this.log.error(`VM ${this.vm}: workload failed at sequence ${j.lastSeq + 1}: ${this.error}`);
    }
  }

  private async closeIo(): Promise<void> {
    const io = this.io;
    this.io = undefined;
    if (io === undefined) return;
    try {
      await io.flush();
    } finally {
      await io.close();
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.control.then(fn);
    this.control = p.catch(() => undefined);
    return p;
  }
}
