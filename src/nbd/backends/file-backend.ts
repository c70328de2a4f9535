/**
 * A raw image file as a disk (nbdkit's file plugin). FLUSH and FUA are
 * fdatasync. TRIM, and WRITE_ZEROES without NO_HOLE, punch holes with
 * util-linux `fallocate` where the file system can (Node has no fallocate);
 * where it cannot, zeroes are written, and FAST_ZERO fails fast with ENOTSUP.
 *
 * Block status reports the whole file as data: Node exposes no SEEK_DATA/SEEK_HOLE,
 * and "data" is always a safe answer (proto.md base:allocation).
 *
 * One instance serves every connection through one descriptor, so a flush on any
 * connection covers writes acknowledged on all: multi-conn is safe. Reads that
 * queue behind busy threadpool slots and are contiguous are served by one preadv.
 */
import { open, type FileHandle } from "node:fs/promises";
import { execa } from "execa";
import { InvalidArgumentError, UnsupportedError, errorMessage, fsError } from "../../errors.js";
import type { NbdBackend, ReadPiece, StatusExtent } from "../backend.js";
import { PreadQueue } from "../../fsio/pread-queue.js";
import { BufferPool } from "../buffer-pool.js";
import { NBD_META_BASE_ALLOCATION } from "../constants.js";

const ZERO_CHUNK = Buffer.alloc(1024 * 1024);

export class FileBackend implements NbdBackend {
  readonly canFlush = true;
  readonly canFua = true;
  readonly canTrim = true;
  readonly canZero = true;
  readonly canFastZero = true;
  readonly canCache = true;
  readonly canMultiConn = true;
  readonly description: string;
  private punchWorks = true;
  private readonly readBuffers = new BufferPool();
  /** Reads combine when they queue (src/fsio/pread-queue.ts): 4 KiB streams cost one threadpool trip per run, not per request. */
  private readonly reads: PreadQueue;

  private constructor(
    private readonly fh: FileHandle,
    private readonly path: string,
    readonly size: number,
    readonly readOnly: boolean,
  ) {
    this.description = `raw file ${path}`;
    this.reads = new PreadQueue(fh.fd);
  }

  /** Open an existing file; with `create`, create or extend it (sparse) to `create` bytes. */
  static async open(path: string, opts: { readOnly?: boolean; create?: number } = {}): Promise<FileBackend> {
    const readOnly = opts.readOnly ?? false;
    let fh: FileHandle;
    try {
      fh = await open(path, readOnly ? "r" : opts.create !== undefined ? "a+" : "r+");
      if (opts.create !== undefined) {
        await fh.close();
        fh = await open(path, "r+");
        const st = await fh.stat();
        if (st.size < opts.create) await fh.truncate(opts.create);
      }
    } catch (e: unknown) {
      throw new InvalidArgumentError(`cannot open ${path}: ${errorMessage(e)}`);
    }
    const st = await fh.stat();
    if (!st.isFile()) {
      await fh.close();
      throw new InvalidArgumentError(`${path} is not a regular file`);
    }
    return new FileBackend(fh, path, st.size, readOnly);
  }

  metaContexts(): readonly string[] {
    return [NBD_META_BASE_ALLOCATION];
  }

  async read(offset: number, length: number): Promise<Buffer> {
    return this.readInto(Buffer.allocUnsafe(length), offset);
  }

  /** Reads into pooled buffers, released once the server has sent them. */
  async readSparse(offset: number, length: number): Promise<ReadPiece[]> {
    const buf = this.readBuffers.get(length);
    try {
      await this.readInto(buf, offset);
    } catch (e: unknown) {
      this.readBuffers.release(buf);
      throw e;
    }
    return [{ offset, data: buf, release: () => this.readBuffers.release(buf) }];
  }

  private async readInto(buf: Buffer, offset: number): Promise<Buffer> {
    const length = buf.length;
    let done = 0;
    while (done < length) {
      const bytesRead = await this.io(() => this.reads.read(buf.subarray(done), offset + done));
      if (bytesRead === 0) {
        buf.fill(0, done); // the file shrank underneath us: beyond EOF reads as zeros
        break;
      }
      done += bytesRead;
    }
    return buf;
  }

  async write(offset: number, data: Buffer, opts: { fua: boolean }): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.io(() => this.fh.write(data, done, data.length - done, offset + done));
      done += bytesWritten;
    }
    if (opts.fua) await this.flush();
  }

  async flush(): Promise<void> {
    await this.io(() => this.fh.datasync());
  }

  async trim(offset: number, length: number, opts: { fua: boolean }): Promise<void> {
    // Trim is advisory; if the file system cannot punch, leaving the data is correct.
    await this.punch(offset, length);
    if (opts.fua) await this.flush();
  }

  async zero(offset: number, length: number, opts: { fua: boolean; mayTrim: boolean; fastZero: boolean }): Promise<void> {
    const punched = opts.mayTrim && (await this.punch(offset, length));
    if (!punched) {
      if (opts.fastZero) throw new UnsupportedError("fast zero unavailable: the file system cannot punch holes");
      for (let pos = offset; pos < offset + length; pos += ZERO_CHUNK.length) {
        const n = Math.min(ZERO_CHUNK.length, offset + length - pos);
        await this.write(pos, ZERO_CHUNK.subarray(0, n), { fua: false });
      }
    }
    if (opts.fua) await this.flush();
  }

  async cache(): Promise<void> {}

  async blockStatus(context: string, offset: number, length: number): Promise<StatusExtent[]> {
    if (context !== NBD_META_BASE_ALLOCATION) throw new UnsupportedError(`context ${context} not served`);
    return [{ offset, length, flags: 0 }];
  }

  async close(): Promise<void> {
    await this.fh.close();
  }

  private async punch(offset: number, length: number): Promise<boolean> {
    if (!this.punchWorks) return false;
    const r = await execa("fallocate", ["--punch-hole", "--keep-size", "--offset", String(offset), "--length", String(length), this.path], {
      reject: false,
    });
    if (r.exitCode !== 0) {
      this.punchWorks = false;
      return false;
    }
    return true;
  }

  private async io<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (e: unknown) {
      throw fsError(e, this.path);
    }
  }
}
