/**
 * LunVolume over an RBD image (or snapshot) served by qemu-nbd: the array's NBD
 * export calls this, this calls our NBD client, qemu-nbd calls librbd.
 *
 * Every mutation passes the LUN's IoGate (io-gate.ts), as in the local store, so
 * a (group) snapshot's fence waits for in-flight writes and holds new ones: the
 * group cut is atomic for every writer that goes through the array's exports.
 * Writers that open the RBD image directly are outside that guarantee.
 */
import type { WriteOptions } from "../../../src/block-device.js";
import { InvalidArgumentError, OutOfRangeError, ReadOnlyError } from "../../../src/errors.js";
import type { NbdClientPool } from "../../../src/nbd/client-pool.js";
import type { StatusExtent } from "../../../src/nbd/backend.js";
import { NBD_META_BASE_ALLOCATION } from "../../../src/nbd/constants.js";
import type { LunVolume } from "../backend.js";
import type { IoGate } from "../io-gate.js";
import type { VolumeReadPiece } from "../volume.js";

export interface RbdVolumeHooks {
  /** The current connection to this image's qemu-nbd (restarted on resize/rollback). */
  client(): Promise<NbdClientPool>;
  gate(): IoGate;
  size(): number;
  /** Called after a mutation completed (the space figures are measured again). */
  written?(): void;
}

export class RbdVolume implements LunVolume {
  constructor(
    readonly id: string,
    readonly readOnly: boolean,
    readonly blockSize: number,
    private readonly hooks: RbdVolumeHooks,
  ) {}

  get size(): number {
    return this.hooks.size();
  }

  private check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new InvalidArgumentError(`invalid range offset=${offset} length=${length}`);
    }
    if (offset + length > this.size) throw new OutOfRangeError(`range ${offset}+${length} is beyond the end of the volume (${this.size} bytes)`);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.check(offset, length);
    if (length === 0) return Buffer.alloc(0);
    return (await this.hooks.client()).read(offset, length);
  }

  async readSparse(offset: number, length: number): Promise<VolumeReadPiece[]> {
    return [{ offset, data: await this.read(offset, length) }];
  }

  private async mutate(offset: number, length: number, op: (c: NbdClientPool) => Promise<void>): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError(`snapshot ${this.id} is read-only`);
    const gate = this.hooks.gate();
    await gate.enter();
    try {
      this.check(offset, length);
      if (length === 0) return;
      await op(await this.hooks.client());
      this.hooks.written?.();
    } finally {
      gate.exit();
    }
  }

  write(offset: number, data: Uint8Array, opts: WriteOptions = {}): Promise<void> {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    return this.mutate(offset, data.length, (c) => c.write(offset, buf, { fua: opts.fua ?? false }));
  }
  zero(offset: number, length: number, opts: WriteOptions = {}): Promise<void> {
    return this.mutate(offset, length, (c) => c.zero(offset, length, { fua: opts.fua ?? false }));
  }
  trim(offset: number, length: number, opts: WriteOptions = {}): Promise<void> {
    // TRIM reads back as zeros here as in the local store (NBD permits it): write zeroes, letting qemu punch.
    return this.mutate(offset, length, (c) => c.zero(offset, length, { fua: opts.fua ?? false }));
  }
  async flush(): Promise<void> {
    if (this.readOnly) return;
    await (await this.hooks.client()).flush();
  }

  async blockStatus(offset: number, length: number): Promise<StatusExtent[]> {
    this.check(offset, length);
    if (length === 0) return [];
    const m = await (await this.hooks.client()).blockStatus(offset, length);
    const list = m.get(NBD_META_BASE_ALLOCATION) ?? [{ offset, length, flag: 0 }];
    return list.filter((e) => e.offset < offset + length).map((e) => ({ offset: e.offset, length: Math.min(e.length, offset + length - e.offset), flag: e.flag }));
  }
}
