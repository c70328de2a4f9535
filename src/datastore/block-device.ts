/**
 * The block device the datastore file system (and the consistency oracle) runs on.
 *
 * Deliberately tiny: a size, a read-only bit, positional read/write, optional
 * trim, and flush. Three adapters cover every place a datastore lives:
 *
 *   MemoryDevice   a Buffer, for tests (and the crash tests' write log)
 *   FileDevice     a local raw image file
 *   NbdDevice      an NBD export through our client: a LUN, or a read-only snapshot
 *
 * Semantics are those of a disk: a write acknowledged before `flush()` returns (or
 * written with `fua`) is durable; a write that is interrupted may be torn.
 */
import { open, type FileHandle } from "node:fs/promises";
import { InvalidArgumentError, ReadOnlyError } from "../errors.js";
import type { NbdClient } from "../nbd/client.js";

export interface WriteOptions {
  /** Force unit access: durable when the promise resolves. */
  fua?: boolean;
}

export interface BlockDevice {
  readonly size: number;
  readonly readOnly: boolean;
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Buffer, opts?: WriteOptions): Promise<void>;
  /** Discard a range; afterwards it reads as zeros. Absent when the device cannot. */
  trim?(offset: number, length: number): Promise<void>;
  flush(): Promise<void>;
  close?(): Promise<void>;
}

/** Throws unless [offset, offset+length) lies inside a device of `size` bytes. */
export function checkDeviceRange(what: string, offset: number, length: number, size: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new InvalidArgumentError(`${what}: range [${offset}, +${length}) is outside the device (${size} bytes)`);
  }
}

/** A device in memory. `buffer` is the live contents (tests read it directly). */
export class MemoryDevice implements BlockDevice {
  readonly buffer: Buffer;
  readonly readOnly: boolean;
  constructor(sizeOrBuffer: number | Buffer, opts: { readOnly?: boolean } = {}) {
    this.buffer = typeof sizeOrBuffer === "number" ? Buffer.alloc(sizeOrBuffer) : sizeOrBuffer;
    this.readOnly = opts.readOnly ?? false;
  }
  get size(): number {
    return this.buffer.length;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    checkDeviceRange("read", offset, length, this.size);
    return Buffer.from(this.buffer.subarray(offset, offset + length));
  }
  async write(offset: number, data: Buffer): Promise<void> {
    checkDeviceRange("write", offset, data.length, this.size);
    if (this.readOnly) throw new ReadOnlyError("write: the device is read-only");
    data.copy(this.buffer, offset);
  }
  async trim(offset: number, length: number): Promise<void> {
    checkDeviceRange("trim", offset, length, this.size);
    if (this.readOnly) throw new ReadOnlyError("trim: the device is read-only");
    this.buffer.fill(0, offset, offset + length);
  }
  async flush(): Promise<void> {}
}

/** A local raw image file. Reads past the end of a short file return zeros. */
export class FileDevice implements BlockDevice {
  private constructor(
    private readonly fh: FileHandle,
    readonly size: number,
    readonly readOnly: boolean,
  ) {}

  /** Opens an existing file; with `create` and `size`, creates it (sparse) or extends it. */
  static async open(path: string, opts: { readOnly?: boolean; create?: boolean; size?: number } = {}): Promise<FileDevice> {
    const readOnly = opts.readOnly ?? false;
    const fh = await open(path, readOnly ? "r" : opts.create === true ? "a+" : "r+");
    try {
      let size = (await fh.stat()).size;
      if (opts.size !== undefined && opts.size > size) {
        if (readOnly) throw new InvalidArgumentError(`${path}: cannot extend a file opened read-only`);
        await fh.truncate(opts.size);
        size = opts.size;
      }
      if (opts.create === true) {
        // "a+" appends on write; reopen positional-writable now that the file exists.
        await fh.close();
        return new FileDevice(await open(path, "r+"), size, false);
      }
      return new FileDevice(fh, size, readOnly);
    } catch (e: unknown) {
      await fh.close();
      throw e;
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkDeviceRange("read", offset, length, this.size);
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) break; // short file: the rest stays zero
      done += bytesRead;
    }
    return buf;
  }
  async write(offset: number, data: Buffer, opts: WriteOptions = {}): Promise<void> {
    checkDeviceRange("write", offset, data.length, this.size);
    if (this.readOnly) throw new ReadOnlyError("write: the file is open read-only");
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
    if (opts.fua === true) await this.fh.datasync();
  }
  async flush(): Promise<void> {
    if (!this.readOnly) await this.fh.datasync();
  }
  async close(): Promise<void> {
    await this.fh.close();
  }
}

/**
 * An NBD export as a block device. FUA falls back to write+flush and flush to a
 * no-op when the server does not offer them; trim exists only when the server can.
 */
export class NbdDevice implements BlockDevice {
  readonly trim?: (offset: number, length: number) => Promise<void>;
  constructor(
    readonly client: NbdClient,
    private readonly ownsClient = true,
  ) {
    if (client.canTrim && !client.readOnly) this.trim = (offset, length) => client.trim(offset, length);
  }
  get size(): number {
    return this.client.size;
  }
  get readOnly(): boolean {
    return this.client.readOnly;
  }
  read(offset: number, length: number): Promise<Buffer> {
    return this.client.read(offset, length);
  }
  async write(offset: number, data: Buffer, opts: WriteOptions = {}): Promise<void> {
    const fua = opts.fua === true;
    if (fua && this.client.canFua) return this.client.write(offset, data, { fua: true });
    await this.client.write(offset, data);
    if (fua) await this.flush();
  }
  async flush(): Promise<void> {
    if (this.client.canFlush && !this.client.readOnly) await this.client.flush();
  }
  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }
}
