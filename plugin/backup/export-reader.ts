/**
 * Reads an NBD export (a snapshot, usually) for a backup: a pool of pipelined
 * connections opened from the export's URI, and on a transient failure
 * (connection closed, timeout) the pool is reopened and the read retried with
 * backoff; an EIO answer is retried on the same connections. Counts every byte it reads from the array.
 */
import type { BlockDevice } from "../../src/block-device.js";
import { ReadOnlyError, SanboxError } from "../../src/errors.js";
import { NbdClientPool } from "../../src/nbd/client-pool.js";
import type { Logger } from "../../src/log.js";
import { isRetryableRead, withRetry } from "./retry.js";

export class ExportReader {
  bytesRead = 0;
  /** Reads retried after a transient failure. */
  retries = 0;
  private constructor(
    readonly uri: string,
    private pool: NbdClientPool,
    private readonly connections: number,
    private readonly log: Logger | undefined,
  ) {}

  static async open(uri: string, opts: { connections?: number; log?: Logger } = {}): Promise<ExportReader> {
    const n = opts.connections ?? 2;
    const pool = await withRetry(`open ${uri}`, () => NbdClientPool.connect(uri, n), opts.log ? { log: opts.log } : {});
    return new ExportReader(uri, pool, n, opts.log);
  }

  get size(): number {
    return this.pool.size;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const data = await withRetry(`read ${this.uri} @${offset}+${length}`, () => this.pool.read(offset, length), {
      ...(this.log ? { log: this.log } : {}),
      retryIf: isRetryableRead,
      onRetry: async (e) => {
        this.retries++;
        if (e instanceof SanboxError && e.code === "NBD_COMMAND") return; // the connection is fine
        await this.pool.close().catch(() => undefined);
        this.pool = await NbdClientPool.connect(this.uri, this.connections);
      },
    });
    this.bytesRead += data.length;
    return data;
  }

  /** The export as a read-only block device (to mount a datastore snapshot with the same retries). */
  asBlockDevice(): BlockDevice {
    return {
      size: this.size,
      readOnly: true,
      read: (o, l) => this.read(o, l),
      write: () => Promise.reject(new ReadOnlyError("a snapshot export is read-only")),
      flush: async () => undefined,
    };
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
