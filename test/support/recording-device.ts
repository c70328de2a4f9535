/**
 * A memory device that logs every write (and trim, as a write of zeros) in order,
 * so crash tests can rebuild the device as it was after any prefix of the log,
 * optionally with the last write torn.
 */
import type { BlockDevice, WriteOptions } from "../../src/block-device.js";
import { MemoryBackend } from "../../src/nbd/backends/memory-backend.js";

export interface LoggedWrite {
  offset: number;
  data: Buffer;
}

export class RecordingDevice implements BlockDevice {
  readonly log: LoggedWrite[] = [];
  readonly inner: MemoryBackend;
  readonly readOnly = false;
  constructor(size: number) {
    this.inner = new MemoryBackend(size);
  }
  get size(): number {
    return this.inner.size;
  }
  read(offset: number, length: number): Promise<Buffer> {
    return this.inner.read(offset, length);
  }
  async write(offset: number, data: Buffer, _opts?: WriteOptions): Promise<void> {
    this.log.push({ offset, data: Buffer.from(data) });
    await this.inner.write(offset, data);
  }
  async trim(offset: number, length: number): Promise<void> {
    this.log.push({ offset, data: Buffer.alloc(length) });
    await this.inner.trim(offset, length);
  }
  async flush(): Promise<void> {}

  /** The device after the first `count` logged writes; `tornBytes` keeps only that many bytes of the last one. */
  replay(count: number, tornBytes?: number): MemoryBackend {
    const image = Buffer.alloc(this.size);
    for (let i = 0; i < count; i++) {
      const w = this.log[i];
      if (w === undefined) break;
      const data = i === count - 1 && tornBytes !== undefined ? w.data.subarray(0, tornBytes) : w.data;
      data.copy(image, w.offset);
    }
    return MemoryBackend.fromBuffer(image);
  }
}
