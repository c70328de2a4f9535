/**
 * A datastore file as a block device: how the hypervisor does a guest's I/O to a
 * VMDK's flat file, and how the oracle or a backup reads one from a snapshot.
 * The size is the file's size when opened (or after `refresh()`); I/O stays inside it.
 */
import { checkDeviceRange, type BlockDevice, type WriteOptions } from "../block-device.js";
import type { Datastore } from "./datastore.js";

export class DatastoreFileDevice implements BlockDevice {
  private constructor(
    readonly ds: Datastore,
    readonly path: string,
    private bytes: number,
  ) {}

  static async open(ds: Datastore, path: string): Promise<DatastoreFileDevice> {
    const st = await ds.stat(path);
    return new DatastoreFileDevice(ds, path, st.size);
  }

  get size(): number {
    return this.bytes;
  }
  get readOnly(): boolean {
    return this.ds.readOnly;
  }

  /** Picks up a new file size (after the file was grown). */
  async refresh(): Promise<void> {
    this.bytes = (await this.ds.stat(this.path)).size;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkDeviceRange("read", offset, length, this.bytes);
    const data = await this.ds.read(this.path, offset, length);
    return data.length === length ? data : Buffer.concat([data, Buffer.alloc(length - data.length)]);
  }

  /** With the default auto-commit datastore, a write that allocated is durable on return; `fua` makes in-place writes durable too. */
  async write(offset: number, data: Buffer, opts: WriteOptions = {}): Promise<void> {
    checkDeviceRange("write", offset, data.length, this.bytes);
    await this.ds.write(this.path, offset, data);
    if (opts.fua === true) await this.ds.flush();
  }

  async trim(offset: number, length: number): Promise<void> {
    checkDeviceRange("trim", offset, length, this.bytes);
    await this.ds.trim(this.path, offset, length);
  }

  async flush(): Promise<void> {
    await this.ds.flush();
  }
}
