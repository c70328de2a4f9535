/**
 * A raw image file as a disk (nbdkit's file plugin), and the block device of a
 * local image for the datastore, the oracle and restore. FLUSH and FUA are
 * fdatasync. TRIM, and WRITE_ZEROES without NO_HOLE, punch holes with
 * util-linux `fallocate` where the file system can (Node has no fallocate);
 * where it cannot, zeroes are written, and FAST_ZERO fails fast with ENOTSUP.
 * So a trimmed range always reads as zeros (NBD would allow less; the
 * BlockDevice contract in src/block-device.ts asks for it).
 *
 * Block status reports the whole file as data: Node exposes no SEEK_DATA/SEEK_HOLE,
 * and "data" is always a safe answer (proto.md base:allocation).
 *
 * One instance serves every connection through one descriptor, so a flush on any
 * connection covers writes acknowledged on all: multi-conn is safe. Reads that
 * queue behind busy threadpool slots and are contiguous are served by one preadv.
 * The size is fixed at open; reads past the end of a file that shrank underneath
 * read as zeros.
 */
import { open, type FileHandle } from "node:fs/promises";
import { execa } from "execa";
import { checkDeviceRange, checkDeviceWrite, type WriteOptions } from "../../block-device.js";
import { InvalidArgumentError, UnsupportedError, errorMessage, fsError, quote } from "../../errors.js";
import type { NbdBackend, ReadPiece, StatusExtent, ZeroOptions } from "../backend.js";
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

  /**
   * Opens an existing file. `create`: create it if it is missing. `size`: first
   * extend it (sparse) to at least that many bytes, even when it is then opened
   * read-only (`nbd serve FILE --readonly --size N` serves a blank disk).
   */
  static async open(path: string, opts: { readOnly?: boolean; create?: boolean; size?: number } = {}): Promise<FileBackend> {
    const readOnly = opts.readOnly ?? false;
    let fh: FileHandle;
    try {
      if (opts.create === true || opts.size !== undefined) {
        // "a+" creates but appends on write: size through it, then reopen for positional I/O.
        const sizing = await open(path, opts.create === true ? "a+" : "r+");
        try {
          if (opts.size !== undefined && (await sizing.stat()).size < opts.size) await sizing.truncate(opts.size);
        } finally {
          await sizing.close();
        }
      }
      fh = await open(path, readOnly ? "r" : "r+");
    } catch (e: unknown) {
      // Node's own message repeats the path in full; the errno code says the rest.
      const code = typeof e === "object" && e !== null ? (e as { code?: unknown }).code : undefined;
      throw new InvalidArgumentError(`cannot open ${quote(path)}: ${typeof code === "string" ? code : errorMessage(e)}`);
    }
    const st = await fh.stat();
    if (!st.isFile()) {
      await fh.close();
      throw new InvalidArgumentError(`${quote(path)} is not a regular file`);
    }
    return new FileBackend(fh, path, st.size, readOnly);
  }

  metaContexts(): readonly string[] {
    return [NBD_META_BASE_ALLOCATION];
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkDeviceRange("read", offset, length, this.size);
    return this.readInto(Buffer.allocUnsafe(length), offset);
  }

  /** Reads into pooled buffers, released once the server has sent them. */
  async readSparse(offset: number, length: number): Promise<ReadPiece[]> {
    checkDeviceRange("read", offset, length, this.size);
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

  async write(offset: number, data: Buffer, opts: WriteOptions = {}): Promise<void> {
    checkDeviceWrite("write", offset, data.length, this);
    await this.writeAll(offset, data);
    if (opts.fua === true) await this.flush();
  }

  private async writeAll(offset: number, data: Buffer): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.io(() => this.fh.write(data, done, data.length - done, offset + done));
      done += bytesWritten;
    }
  }

  async flush(): Promise<void> {
    await this.io(() => this.fh.datasync());
  }

  /** A hole where the file system can punch one, else written zeros: either way it reads as zeros. */
  async trim(offset: number, length: number, opts: WriteOptions = {}): Promise<void> {
    checkDeviceWrite("trim", offset, length, this);
    await this.zeroRange(offset, length, { ...opts, mayTrim: true, fastZero: false });
  }

  async zero(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    checkDeviceWrite("zero", offset, length, this);
    await this.zeroRange(offset, length, opts);
  }

  private async zeroRange(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    if (length === 0) return; // fallocate refuses a zero length, which would switch punching off for good
    const punched = opts.mayTrim && (await this.punch(offset, length));
    if (!punched) {
      if (opts.fastZero) throw new UnsupportedError("fast zero unavailable: the file system cannot punch holes");
      for (let pos = offset; pos < offset + length; pos += ZERO_CHUNK.length) {
        const n = Math.min(ZERO_CHUNK.length, offset + length - pos);
        await this.writeAll(pos, ZERO_CHUNK.subarray(0, n));
      }
    }
    if (opts.fua === true) await this.flush();
  }

  async cache(): Promise<void> {}

  async blockStatus(context: string, offset: number, length: number): Promise<StatusExtent[]> {
    if (context !== NBD_META_BASE_ALLOCATION) throw new UnsupportedError(`context ${context} not served`);
    return [{ offset, length, flag: 0 }];
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
