/**
 * A small pool of worker threads for CPU-bound jobs (hashing, compression), so
 * they run beside the event loop instead of on it.
 *
 * A job program is JavaScript source defining `async function handle(job)`
 * that returns `{ result, transfer? }`; the pool wraps it in a message loop and
 * starts it with `eval: true`. Source rather than a file path keeps the pool
 * independent of where the code runs from (dist/ after a build, src/ under
 * vitest, which cannot load a .ts file into a worker).
 *
 * Invariants:
 *  - a worker runs one job at a time; at most `maxQueue` jobs wait for a
 *    worker, and `run` waits (does not fail) while the queue is full, so a fast
 *    producer is slowed to the workers' pace instead of buffering without bound;
 *  - buffers listed in `transfer` move to the worker without a copy, and the
 *    caller must not touch them until the job settles (`transferable` says
 *    which Buffers can move: a pooled Buffer shares its ArrayBuffer);
 *  - a job that throws rejects with WorkerJobError and the worker lives on; a
 *    worker that dies fails only the job it held, with WorkerCrashedError, and
 *    is replaced on the next dispatch;
 *  - `close()` refuses new jobs (CancelledError), lets queued and running jobs
 *    finish, then terminates every worker; it resolves when all have exited;
 *  - an idle worker does not keep the process alive (it is unref'd between
 *    jobs), so a pool its owner never closes cannot hang the exit, while a
 *    running job still can't be cut short by it.
 */
import { Worker, type TransferListItem } from "node:worker_threads";
import { CancelledError, InvalidArgumentError, WorkerCrashedError, WorkerJobError } from "../errors.js";

export interface WorkerProgram {
  /** For messages: which kind of job the workers run. */
  readonly name: string;
  /** CommonJS source defining `async function handle(job) { return { result, transfer } }`. */
  readonly source: string;
}

export interface WorkerPoolOptions {
  /** Worker threads (default 2). */
  size?: number;
  /** Jobs waiting for a worker before `run` waits (default 4 × size). */
  maxQueue?: number;
}

interface Job {
  readonly id: number;
  readonly payload: unknown;
  readonly transfer: readonly TransferListItem[];
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: unknown) => void;
}

interface Slot {
  worker: Worker;
  job: Job | undefined;
  /** The uncaught error the worker reported before exiting, if any. */
  lastError: Error | undefined;
  exited: Promise<void>;
}

type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; name: string; message: string };

function harness(program: WorkerProgram): string {
  return `"use strict";
const { parentPort } = require("node:worker_threads");
${program.source}
parentPort.on("message", async (m) => {
  try {
    const out = await handle(m.job);
    parentPort.postMessage({ id: m.id, ok: true, result: out.result }, out.transfer ?? []);
  } catch (e) {
    parentPort.postMessage({ id: m.id, ok: false, name: (e && e.name) || "Error", message: (e && e.message) || String(e) });
  }
});
`;
}

export class WorkerPool<J, R> {
  private readonly slots: (Slot | undefined)[];
  private readonly queue: Job[] = [];
  private readonly spaceWaiters: (() => void)[] = [];
  private readonly idleWaiters: (() => void)[] = [];
  private readonly maxQueue: number;
  private readonly code: string;
  private nextId = 1;
  private closing = false;

  constructor(
    private readonly program: WorkerProgram,
    opts: WorkerPoolOptions = {},
  ) {
    const size = opts.size ?? 2;
    if (!Number.isInteger(size) || size < 1) throw new InvalidArgumentError(`worker pool size must be a positive integer, got ${size}`);
    this.maxQueue = Math.max(1, opts.maxQueue ?? 4 * size);
    this.slots = Array.from({ length: size }, () => undefined);
    this.code = harness(program);
  }

  get size(): number {
    return this.slots.length;
  }

  /** Runs one job; resolves with its result. Waits while `maxQueue` jobs are already waiting. */
  async run(payload: J, transfer: readonly TransferListItem[] = []): Promise<R> {
    while (!this.closing && this.queue.length >= this.maxQueue) await new Promise<void>((r) => this.spaceWaiters.push(r));
    if (this.closing) throw new CancelledError(`${this.program.name} worker pool is closed`);
    const result = new Promise<unknown>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, payload, transfer, resolve, reject });
    });
    this.dispatch();
    return (await result) as R;
  }

  /** Refuses new jobs, finishes the queued and running ones, then stops every worker. */
  async close(): Promise<void> {
    this.closing = true;
    for (const w of this.spaceWaiters.splice(0)) w();
    while (this.queue.length > 0 || this.slots.some((s) => s?.job !== undefined)) await new Promise<void>((r) => this.idleWaiters.push(r));
    const live = this.slots.filter((s): s is Slot => s !== undefined);
    await Promise.all(live.map(async (s) => {
      await s.worker.terminate();
      await s.exited;
    }));
  }

  private dispatch(): void {
    for (let i = 0; i < this.slots.length && this.queue.length > 0; i++) {
      const slot = this.slots[i] ?? this.spawn(i);
      if (slot.job !== undefined) continue;
      const job = this.queue.shift() as Job;
      slot.job = job;
      slot.worker.ref();
      try {
        slot.worker.postMessage({ id: job.id, job: job.payload }, [...job.transfer]);
      } catch (e: unknown) {
        // The payload could not be cloned or moved (a detached buffer, say):
        // that job fails, and the worker, which never saw it, stays free.
        slot.job = undefined;
        slot.worker.unref();
        job.reject(new WorkerJobError(`${this.program.name} job could not be sent to a worker: ${e instanceof Error ? e.message : String(e)}`, "DataCloneError"));
        this.spaceWaiters.shift()?.();
        i--;
        continue;
      }
      this.spaceWaiters.shift()?.();
    }
    this.wakeIfIdle();
  }

  private wakeIfIdle(): void {
    if (this.queue.length === 0 && this.slots.every((s) => s?.job === undefined)) for (const w of this.idleWaiters.splice(0)) w();
  }

  private spawn(i: number): Slot {
    // The harness is CommonJS: a parent started with --input-type=module would make it an ES module.
    const worker = new Worker(this.code, { eval: true, execArgv: process.execArgv.filter((a) => !a.startsWith("--input-type")) });
    worker.unref();
    let exited!: () => void;
    const slot: Slot = { worker, job: undefined, lastError: undefined, exited: new Promise<void>((r) => (exited = r)) };
    this.slots[i] = slot;
    worker.on("message", (m: Reply) => {
      const job = slot.job;
      if (job === undefined || job.id !== m.id) return;
      slot.job = undefined;
      worker.unref();
      if (m.ok) job.resolve(m.result);
      else job.reject(new WorkerJobError(`${this.program.name} job failed: ${m.name}: ${m.message}`, m.name));
      this.settled();
    });
    worker.on("error", (e: Error) => {
      slot.lastError = e;
    });
    worker.on("exit", (code: number) => {
      if (this.slots[i] === slot) this.slots[i] = undefined;
      const job = slot.job;
      slot.job = undefined;
      if (job !== undefined) {
        const why = slot.lastError ? `: ${slot.lastError.message}` : "";
        job.reject(new WorkerCrashedError(`${this.program.name} worker ${i} exited with code ${code} while running a job${why}`, slot.lastError ? { cause: slot.lastError } : undefined));
      }
      exited();
      if (job !== undefined) this.settled();
    });
    return slot;
  }

  /** A job finished (either way): start the next, and wake close() once nothing is left. */
  private settled(): void {
    this.dispatch();
  }
}

/**
 * The ArrayBuffer to transfer with `buf`, when `buf` owns all of it, so
 * transferring detaches nothing else (pooled small Buffers share one); else undefined.
 */
export function transferable(buf: Uint8Array): ArrayBuffer | undefined {
  const ab = buf.buffer;
  return ab instanceof ArrayBuffer && buf.byteOffset === 0 && buf.byteLength === ab.byteLength ? ab : undefined;
}
