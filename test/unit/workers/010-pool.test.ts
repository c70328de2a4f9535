// The worker pool: results, job errors, a worker crash failing only its job, bounded queue, shutdown.
import { createHash } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { CancelledError, WorkerCrashedError, WorkerJobError } from "../../../src/errors.js";
import { WorkerPool, type WorkerProgram } from "../../../src/workers/pool.js";
import { Sha256Pool } from "../../../src/workers/sha256.js";

// A test program: echoes, throws, or kills its thread, as the job says.
const PROGRAM: WorkerProgram = {
  name: "test",
  source: `async function handle(job) {
  if (job.op === "throw") throw new RangeError("bad job " + job.n);
  if (job.op === "crash") process.exit(3);
  if (job.op === "slow") await new Promise((r) => setTimeout(r, 50));
  return { result: job.n * 2 };
}`,
};

type Job = { op: "echo" | "throw" | "crash" | "slow"; n: number };
const pools: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

function pool(size = 2, maxQueue?: number): WorkerPool<Job, number> {
  const p = new WorkerPool<Job, number>(PROGRAM, { size, ...(maxQueue !== undefined ? { maxQueue } : {}) });
  pools.push(p);
  return p;
}

describe("WorkerPool", () => {
  it("runs jobs and returns their results", async () => {
    const p = pool();
    const out = await Promise.all(Array.from({ length: 20 }, (_, n) => p.run({ op: "echo", n })));
    expect(out).toEqual(Array.from({ length: 20 }, (_, n) => n * 2));
  });

  it("a job that throws rejects with WorkerJobError; the worker lives on", async () => {
    const p = pool(1);
    const err = await p.run({ op: "throw", n: 7 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerJobError);
    expect((err as WorkerJobError).remoteName).toBe("RangeError");
    expect((err as Error).message).toMatch(/bad job 7/);
    expect(await p.run({ op: "echo", n: 4 })).toBe(8);
  });

  it("a job that cannot be cloned fails alone; the worker takes the next job, and close still returns", async () => {
    const p = pool(1);
    const unclonable = { op: "echo", n: 1, f: () => 1 } as unknown as Job;
    const err = await p.run(unclonable).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerJobError);
    expect(String(err)).toMatch(/could not be sent/);
    expect(await p.run({ op: "echo", n: 4 })).toBe(8);
    await p.close();
  });

  it("a crashed worker fails only its job, and is replaced", async () => {
    const p = pool(2);
    const jobs = [p.run({ op: "slow", n: 1 }), p.run({ op: "crash", n: 0 }), p.run({ op: "slow", n: 2 }), p.run({ op: "echo", n: 3 })];
    const r = await Promise.allSettled(jobs);
    expect(r.map((x) => x.status)).toEqual(["fulfilled", "rejected", "fulfilled", "fulfilled"]);
    const why = (r[1] as PromiseRejectedResult).reason as unknown;
    expect(why).toBeInstanceOf(WorkerCrashedError);
    expect((why as Error).message).toMatch(/test worker \d exited with code 3 while running a job/);
    expect(await p.run({ op: "echo", n: 5 })).toBe(10);
  });

  it("run waits while the queue is full", async () => {
    const p = pool(1, 1);
    let started = 0;
    const all = Array.from({ length: 4 }, (_, n) => {
      const job = p.run({ op: "slow", n });
      started++;
      return job;
    });
    expect(started).toBe(4); // run() returns promises at once; the waiting is inside them
    expect(await Promise.all(all)).toEqual([0, 2, 4, 6]);
  });

  it("close finishes queued jobs, then refuses new ones", async () => {
    const p = new WorkerPool<Job, number>(PROGRAM, { size: 1 });
    const a = p.run({ op: "slow", n: 1 });
    const b = p.run({ op: "slow", n: 2 });
    await p.close();
    expect(await a).toBe(2);
    expect(await b).toBe(4);
    await expect(p.run({ op: "echo", n: 1 })).rejects.toBeInstanceOf(CancelledError);
  });
});

describe("Sha256Pool", () => {
  it("hashes like createHash, transferring owned buffers and copying pooled ones", async () => {
    const p = new Sha256Pool({ size: 2 });
    pools.push(p);
    const owned = Buffer.alloc(1 << 20, 0xab);
    const want = createHash("sha256").update(owned).digest("hex");
    const got = await p.hash(owned);
    expect(got.hash).toBe(want);
    expect(got.data.equals(Buffer.alloc(1 << 20, 0xab))).toBe(true);
    const small = Buffer.from("hello"); // from Node's shared pool: must not be transferred
    const s = await p.hash(small);
    expect(s.hash).toBe(createHash("sha256").update("hello").digest("hex"));
    expect(small.toString()).toBe("hello");
  });
});
