/**
 * The CPU-bound half of the chunk store: turning a raw chunk into what a pack
 * holds (zero test, SHA-256, zstd) and back (zstd, length and hash check).
 * Two implementations with one contract: `inlineCodec` on the calling thread,
 * and `workerCodec`, which packs on a pool of worker threads
 * (src/workers/pool.ts), so the event loop keeps NBD reads and pack appends
 * moving while chunks are hashed and compressed beside it.
 *
 * Measured on the bench case (1 GiB of data, 2 cores, docs/benchmarks.md):
 * packing costs about 2.2 s of CPU per GiB (zstd level 3 1.5 s, SHA-256
 * 0.7 s), and a full backup ran 0.79× the time with two workers than inline.
 * Unpacking costs about 0.7 s per GiB (decompression is 4× cheaper than
 * compression), less than the round trip to a worker: a restore of 512 MiB
 * took 2.4 s inline and 3.1 s through workers. So the worker codec unpacks
 * on the calling thread.
 *
 * Invariants (both implementations):
 *  - `pack` returns null for an all-zero chunk (never stored), else the hex
 *    SHA-256 of the raw bytes and the stored form: a zstd frame when it saves
 *    at least 1/64 of the chunk (flag FLAG_ZSTD), else the raw bytes;
 *  - `pack` consumes its argument: the worker codec moves a buffer that owns
 *    its memory to the worker (no copy), which detaches it from the caller;
 *  - `unpack` never returns bytes that fail their check: a frame that does not
 *    decompress, a wrong length or a wrong hash is a CorruptError whose message
 *    is the reason (the store adds the chunk, pack and offset);
 *  - `unpack` is bounded: it decompresses in one pass into a buffer of the
 *    recorded raw length (ZSTD_decompressDCtx through zstd-napi's binding).
 *    zstd-napi's `Decompressor` is not used: it sizes its output from what
 *    the (possibly damaged) frame header claims, and when the header states
 *    no size it streams with no bound at all. We know the length, so a frame
 *    that decodes to more is rejected without allocating what it claims;
 *  - a damaged frame can still decode to the right bytes (some header bits,
 *    such as a larger window, do not change the output): the hash check
 *    decides, never the frame's own state;
 *  - the worker pool keeps no process alive while it is idle (pool.ts), so a
 *    caller that forgets `close` does not hang at exit.
 */
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { Compressor } from "zstd-napi";
import { CorruptError, errorMessage } from "../../../src/errors.js";
import { transferable, WorkerPool, type WorkerProgram } from "../../../src/workers/pool.js";
import { FLAG_ZSTD } from "./pack-format.js";

/** zstd level: measured in docs/backup.md (level 3 compresses as well as 6–9 on our data at 3–5× their speed). */
export const ZSTD_LEVEL = 3;

export interface PackedChunk {
  readonly hash: string;
  readonly stored: Buffer;
  readonly flags: number;
}

export interface ChunkCodec {
  /** What runs the work, for logs and benchmarks ("inline", "2 workers"). */
  readonly name: string;
  pack(chunk: Buffer): Promise<PackedChunk | null>;
  unpack(stored: Buffer, expect: { hash: string; raw: number; flags: number }): Promise<Buffer>;
  close(): Promise<void>;
}

export function isZero(data: Uint8Array): boolean {
  const words = data.byteOffset % 8 === 0 ? new BigUint64Array(data.buffer, data.byteOffset, data.length >> 3) : undefined;
  let i = 0;
  if (words !== undefined) {
    for (const w of words) if (w !== 0n) return false;
    i = words.length * 8;
  }
  for (; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}

export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** The check `unpack` makes, as a reason (undefined: the bytes are good). */
function verdict(raw: Uint8Array, expect: { hash: string; raw: number }): string | undefined {
  if (raw.length !== expect.raw) return `holds ${raw.length} bytes, expected ${expect.raw}`;
  const actual = sha256(raw);
  return actual === expect.hash ? undefined : `hashes to ${actual}`;
}

type ZstdBinding = typeof import("zstd-napi/binding.js");
const zstdBinding = createRequire(import.meta.url)("zstd-napi/binding.js") as ZstdBinding;

/**
 * One zstd frame (or several) into exactly `raw` bytes, in a single bounded
 * pass: more output than `raw` is an error from zstd ("destination buffer is
 * too small"), less is a short result the caller rejects.
 */
function decompressBounded(dctx: InstanceType<ZstdBinding["DCtx"]>, stored: Buffer, raw: number): Buffer {
  const out = Buffer.allocUnsafe(raw);
  let n: number;
  try {
    n = dctx.decompress(out, stored);
  } catch (e: unknown) {
    if (/too small/i.test(errorMessage(e))) throw new CorruptError(`holds more than ${raw} bytes, expected ${raw}`);
    throw new CorruptError(`does not decompress (${errorMessage(e)})`);
  }
  return n === raw ? out : out.subarray(0, n);
}

/** Hashing and zstd on the calling thread. */
export function inlineCodec(): ChunkCodec {
  const compressor = new Compressor();
  compressor.setParameters({ compressionLevel: ZSTD_LEVEL });
  const dctx = new zstdBinding.DCtx();
  return {
    name: "inline",
    pack(chunk) {
      if (isZero(chunk)) return Promise.resolve(null);
      const hash = sha256(chunk);
      const z = compressor.compress(chunk);
      const useZ = z.length < chunk.length - (chunk.length >> 6);
      return Promise.resolve({ hash, stored: useZ ? z : chunk, flags: useZ ? FLAG_ZSTD : 0 });
    },
    unpack(stored, expect) {
      let raw: Buffer;
      if ((expect.flags & FLAG_ZSTD) !== 0) {
        try {
          raw = decompressBounded(dctx, stored, expect.raw);
        } catch (e: unknown) {
          return Promise.reject(e instanceof Error ? e : new CorruptError(errorMessage(e)));
        }
      } else raw = stored;
      const bad = verdict(raw, expect);
      return bad === undefined ? Promise.resolve(raw) : Promise.reject(new CorruptError(bad));
    },
    close: () => Promise.resolve(),
  };
}

type Job = { op: "pack"; data: Uint8Array };
type Result = { zero: true } | { hash: string; stored: Uint8Array; flags: number };

/**
 * The worker side: inlineCodec's packing, in CommonJS (the pool evals it). The zstd binding is loaded by absolute path, because an eval'd worker
 * resolves bare names from the working directory, not from this package.
 */
function program(): WorkerProgram {
  const zstd = createRequire(import.meta.url).resolve("zstd-napi");
  return {
    name: "chunk codec",
    source: `const { createHash } = require("node:crypto");
const { Compressor } = require(${JSON.stringify(zstd)});
const compressor = new Compressor();
compressor.setParameters({ compressionLevel: ${ZSTD_LEVEL} });
const ZSTD = ${FLAG_ZSTD};
const sha256 = (b) => createHash("sha256").update(b).digest("hex");
const owns = (b) => b.byteOffset === 0 && b.byteLength === b.buffer.byteLength;
function isZero(b) {
  let i = 0;
  if (b.byteOffset % 8 === 0) {
    const w = new BigUint64Array(b.buffer, b.byteOffset, b.length >> 3);
    for (let k = 0; k < w.length; k++) if (w[k] !== 0n) return false;
    i = w.length * 8;
  }
  for (; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}
function one(job, transfer) {
  const data = Buffer.from(job.data.buffer, job.data.byteOffset, job.data.byteLength);
  if (job.op === "pack") {
    if (isZero(data)) return { zero: true };
    const hash = sha256(data);
    const z = compressor.compress(data);
    const useZ = z.length < data.length - (data.length >> 6);
    const stored = useZ ? z : data;
    if (owns(stored)) transfer.push(stored.buffer);
    return { hash, stored, flags: useZ ? ZSTD : 0 };
  }
  throw new Error("unknown chunk codec job " + job.op);
}
async function handle(batch) {
  const transfer = [];
  return { result: batch.map((job) => one(job, transfer)), transfer };
}`,
  };
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/**
 * Jobs per message. A round trip to a worker costs about as much as packing
 * one 64 KiB chunk (measured: one chunk per message ran at 180–480 MiB/s on
 * two workers, against 700–880 MiB/s inline), so jobs travel in batches.
 */
const BATCH = 16;

interface Waiting {
  readonly job: Job;
  readonly resolve: (r: Result) => void;
  readonly reject: (e: unknown) => void;
}

/**
 * Hashing and zstd on `size` worker threads (default: one per core). Calls
 * are gathered into batches of BATCH jobs; a batch that is not full leaves at
 * the next turn of the event loop, so a lone call waits no longer than that.
 */
export function workerCodec(size = availableParallelism()): ChunkCodec {
  const pool = new WorkerPool<Job[], Result[]>(program(), { size, maxQueue: 4 * size });
  const inline = inlineCodec();
  let batch: Waiting[] = [];
  let scheduled = false;
  const send = (): void => {
    scheduled = false;
    const mine = batch;
    batch = [];
    if (mine.length === 0) return;
    const transfer: ArrayBuffer[] = [];
    for (const w of mine) {
      const own = transferable(w.job.data);
      // Two jobs on one ArrayBuffer cannot both move it: the second is copied.
      if (own !== undefined && !transfer.includes(own)) transfer.push(own);
    }
    pool.run(mine.map((w) => w.job), transfer).then(
      (results) => mine.forEach((w, k) => {
        const r = results[k];
        if (r === undefined) w.reject(new Error("chunk codec worker: short batch result"));
        else w.resolve(r);
      }),
      (e: unknown) => {
        for (const w of mine) w.reject(e);
      },
    );
  };
  const run = (job: Job): Promise<Result> =>
    new Promise<Result>((resolve, reject) => {
      batch.push({ job, resolve, reject });
      if (batch.length >= BATCH) send();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(send);
      }
    });
  return {
    name: `${size} worker${size === 1 ? "" : "s"}`,
    async pack(chunk) {
      const r = await run({ op: "pack", data: chunk });
      if ("zero" in r) return null;
      return { hash: r.hash, stored: asBuffer(r.stored), flags: r.flags };
    },
    unpack: (stored, expect) => inline.unpack(stored, expect),
    close: async () => {
      send();
      await pool.close();
    },
  };
}
