/**
 * SHA-256 on worker threads: the first job of src/workers/pool.ts.
 *
 * A buffer that owns its memory is transferred to the worker and back (no
 * copy); any other is copied by the structured clone. Either way the caller
 * uses the returned `data` afterwards, never the buffer it passed: a
 * transferred buffer is detached (length 0) from the moment `hash` is called.
 */
import { transferable, WorkerPool, type WorkerPoolOptions, type WorkerProgram } from "./pool.js";

const PROGRAM: WorkerProgram = {
  name: "sha256",
  source: `const { createHash } = require("node:crypto");
async function handle(job) {
  const hash = createHash("sha256").update(job.data).digest("hex");
  return job.back ? { result: { hash, data: job.data }, transfer: [job.data.buffer] } : { result: { hash } };
}`,
};

interface HashJob {
  data: Uint8Array;
  /** Send the bytes back (they were transferred, so the caller no longer has them). */
  back: boolean;
}

export class Sha256Pool {
  private readonly pool: WorkerPool<HashJob, { hash: string; data?: Uint8Array }>;

  constructor(opts: WorkerPoolOptions = {}) {
    this.pool = new WorkerPool(PROGRAM, opts);
  }

  /** The hex SHA-256 of `data`, and the bytes to use from now on (see the note above). */
  async hash(data: Buffer): Promise<{ hash: string; data: Buffer }> {
    const own = transferable(data);
    if (own === undefined) return { hash: (await this.pool.run({ data, back: false })).hash, data };
    const out = await this.pool.run({ data, back: true }, [own]);
    const back = out.data;
    if (back === undefined) throw new Error("sha256 worker returned no data");
    return { hash: out.hash, data: Buffer.from(back.buffer, back.byteOffset, back.byteLength) };
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}
