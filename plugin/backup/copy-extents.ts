/**
 * The one copy routine: "copy these extents from this export into this image".
 * Full backups, incrementals, the revert and restores all come down to a list
 * of CopyRanges (read srcOffset from the source, write at dstOffset) plus
 * ranges to zero and a final size, i.e. a RevertPlan-shaped job.
 *
 * Order: resize first (a shrink drops the tail, a grow reads as zeros), then
 * zeros, then the copies. Copies are split into requests of at most
 * `maxRequest` bytes and run with at most `parallel` requests in flight; each
 * write starts when its read returns, so memory is bounded by
 * parallel × maxRequest.
 */
import type { Extent } from "../../src/extents/index.js";
import type { CopyRange } from "./revert-plan.js";
import type { ImageSink } from "./repository/image-builder.js";

export interface ExtentSource {
  read(offset: number, length: number): Promise<Buffer>;
}

export interface CopyJob {
  copies: readonly CopyRange[];
  zeros?: readonly Extent[];
  /** The sink's size afterwards; undefined leaves it. */
  size?: number;
}

export interface CopyStats {
  bytesRead: number;
  bytesWritten: number;
  bytesZeroed: number;
}

export interface CopyOptions {
  parallel?: number;
  maxRequest?: number;
  /** Called with (bytes done, bytes total) as data lands. */
  onProgress?: (done: number, total: number) => void;
}

export async function copyExtents(src: ExtentSource, job: CopyJob, sink: ImageSink, opts: CopyOptions = {}): Promise<CopyStats> {
  const parallel = Math.max(1, opts.parallel ?? 8);
  const maxRequest = Math.max(4096, opts.maxRequest ?? 1024 * 1024);
  const stats: CopyStats = { bytesRead: 0, bytesWritten: 0, bytesZeroed: 0 };
  if (job.size !== undefined && job.size !== sink.size) await sink.resize(job.size);
  for (const z of job.zeros ?? []) {
    await sink.zero(z.offset, z.length);
    stats.bytesZeroed += z.length;
  }
  const pieces: CopyRange[] = [];
  for (const c of job.copies) {
    for (let at = 0; at < c.length; at += maxRequest) pieces.push({ srcOffset: c.srcOffset + at, dstOffset: c.dstOffset + at, length: Math.min(maxRequest, c.length - at) });
  }
  const total = pieces.reduce((n, p) => n + p.length, 0);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < pieces.length) {
      const p = pieces[next++] as CopyRange;
      try {
        const data = await src.read(p.srcOffset, p.length);
        stats.bytesRead += data.length;
        await sink.write(p.dstOffset, data);
      } catch (e: unknown) {
        next = pieces.length; // stop the other workers
        throw e;
      }
      stats.bytesWritten += p.length;
      opts.onProgress?.(stats.bytesWritten, total);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, pieces.length) }, worker));
  return stats;
}
