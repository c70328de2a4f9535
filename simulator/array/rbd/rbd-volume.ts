/**
 * LunVolume over an RBD image (or snapshot) served by qemu-nbd: the array's NBD
 * export calls this, this calls our NBD client, qemu-nbd calls librbd.
 *
 * Every mutation passes the LUN's IoGate (io-gate.ts), as in the local store, so
 * a (group) snapshot's fence waits for in-flight writes and holds new ones: the
 * group cut is atomic for every writer that goes through the array's exports.
 * Writers that open the RBD image directly are outside that guarantee.
 *
 * Every request runs under the backend's deadline (`bound`, ceph-stall.ts): a
 * request Ceph has paused (pool full, OSD gone) fails the NBD client with ENOSPC
 * or EIO within the deadline, while the array stays up. A mutation that failed
 * that way still holds its gate entry until qemu-nbd really answers: librbd may
 * still apply it, so a snapshot's fence must not cut around it.
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
  /** Ends a request that Ceph does not answer: NO_SPACE, EIO or TIMEOUT (ceph-stall.ts). */
  bound<T>(what: string, work: Promise<T>): Promise<T>;
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
    const c = await this.hooks.client();
    return this.hooks.bound(`read of ${this.id}`, c.read(offset, length));
  }

  async readSparse(offset: number, length: number): Promise<VolumeReadPiece[]> {
    return [{ offset, data: await this.read(offset, length) }];
  }

  private async mutate(offset: number, length: number, op: (c: NbdClientPool) => Promise<void>): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError(`snapshot ${this.id} is read-only`);
    const gate = this.hooks.gate();
    await gate.enter();
    let real: Promise<void>;
    try {
      this.check(offset, length);
      if (length === 0) {
        gate.exit();
        return;
      }
      real = op(await this.hooks.client());
    } catch (e) {
      gate.exit();
      throw e;
    }
    // The gate entry ends when qemu-nbd answers, even if the caller was answered first.
    real.then(
      () => {
        gate.exit();
        this.hooks.written?.();
      },
      () => gate.exit(),
    );
    await this.hooks.bound(`write to ${this.id}`, real);
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
    const c = await this.hooks.client();
    await this.hooks.bound(`flush of ${this.id}`, c.flush());
  }

  async blockStatus(offset: number, length: number): Promise<StatusExtent[]> {
    this.check(offset, length);
    if (length === 0) return [];
    const c = await this.hooks.client();
    const m = await this.hooks.bound(`block status of ${this.id}`, c.blockStatus(offset, length));
    const list = m.get(NBD_META_BASE_ALLOCATION) ?? [{ offset, length, flag: 0 }];
    return list.filter((e) => e.offset < offset + length).map((e) => ({ offset: e.offset, length: Math.min(e.length, offset + length - e.offset), flag: e.flag }));
  }
}
