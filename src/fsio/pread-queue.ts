/**
 * Positioned reads of one file descriptor through the libuv threadpool, with
 * contiguous requests combined.
 *
 * Why: at small request sizes (4 KiB) a server's read cost is the threadpool
 * round trip, not the copy: one hand-off to a worker and one wake-up back per
 * pread. Clients that stream (nbdcopy, qemu-img, our backup) keep dozens of
 * sequential requests in flight, so most of them are contiguous in the file.
 *
 * Rules:
 *  - At most `depth` reads are in the threadpool. Below that a read is issued at
 *    once, alone: combining never adds latency to a lightly loaded file.
 *  - Reads that arrive while the pool is busy queue; when a slot frees, the queue
 *    is sorted by position and the first read takes every queued read that starts
 *    exactly where it ends (up to MAX_OPS buffers and MAX_BYTES), served by one
 *    preadv straight into the callers' buffers (no scratch copy).
 *  - A short read is reported per request, as pread would: a request resolves
 *    with the bytes that landed in its own buffer, and 0 only at end of file (a
 *    combined read that came back short re-reads the rest of each short request
 *    on its own). Callers loop on short reads exactly as they do on pread.
 *  - An error fails every request of that preadv; each caller sees the errno.
 *
 * Requests never overlap in their destination buffers (each has its own), and
 * the file's contents are whatever they are at service time, as with concurrent
 * preads: combining does not change what a read may observe.
 */
import { read as fsRead, readv as fsReadv } from "node:fs";

const MAX_OPS = 64; // well under IOV_MAX (1024)
const MAX_BYTES = 8 * 1024 * 1024;

interface QueuedRead {
  pos: number;
  buf: Uint8Array;
  resolve: (bytesRead: number) => void;
  reject: (e: Error) => void;
}

export interface PreadQueueStats {
  /** Reads asked for. */
  requests: number;
  /** pread/preadv calls made for them. */
  syscalls: number;
}

export class PreadQueue {
  private readonly queue: QueuedRead[] = [];
  private inFlight = 0;
  readonly stats: PreadQueueStats = { requests: 0, syscalls: 0 };

  constructor(
    private readonly fd: number,
    private readonly depth = 4,
  ) {}

  /** Reads up to `buf.length` bytes at `pos`; resolves with how many landed (0 at end of file). */
  read(buf: Uint8Array, pos: number): Promise<number> {
    this.stats.requests++;
    return this.enqueue(buf, pos);
  }

  private enqueue(buf: Uint8Array, pos: number): Promise<number> {
    if (buf.length === 0) return Promise.resolve(0);
    return new Promise<number>((resolve, reject) => {
      this.queue.push({ pos, buf, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.depth && this.queue.length > 0) {
      if (this.queue.length > 1) this.queue.sort((a, b) => a.pos - b.pos);
      const first = this.queue[0] as QueuedRead;
      let end = first.pos + first.buf.length;
      let bytes = first.buf.length;
      let n = 1;
      while (n < MAX_OPS && bytes < MAX_BYTES) {
        const r = this.queue[n];
        if (r === undefined || r.pos !== end) break;
        end += r.buf.length;
        bytes += r.buf.length;
        n++;
      }
      const batch = this.queue.splice(0, n);
      this.inFlight++;
      this.stats.syscalls++;
      const done = (err: Error | null, total: number): void => {
        this.inFlight--;
        let left = total;
        for (const r of batch) {
          if (err) r.reject(err);
          else {
            const got = Math.min(left, r.buf.length);
            left -= got;
            // A combined read came back short: finish this request on its own, so
            // that "0 bytes" keeps meaning end of file to the caller.
            if (got < r.buf.length && batch.length > 1) this.enqueue(r.buf.subarray(got), r.pos + got).then((more) => r.resolve(got + more), r.reject);
            else r.resolve(got);
          }
        }
        this.pump();
      };
      if (batch.length === 1) fsRead(this.fd, first.buf, 0, first.buf.length, first.pos, (e, got) => done(e, got));
      else
        fsReadv(
          this.fd,
          batch.map((r) => r.buf),
          first.pos,
          (e, got) => done(e, got),
        );
    }
  }
}
