/**
 * The one block-device interface: what the datastore file system, the
 * consistency oracle, the hypervisor's guest I/O and the backup's restore run
 * on, and the base that every NBD backend (src/nbd/backend.ts) extends. So a
 * memory disk or a raw file is the same object whether it is served over NBD
 * or mounted as a datastore; there is no second "device" family beside the
 * backends.
 *
 * Implementations: MemoryBackend and FileBackend (src/nbd/backends/), the
 * array's VolumeBackend, DatastoreFileDevice (a file inside a datastore), and
 * NbdDevice (src/nbd/nbd-device.ts: an NBD client seen as a block device, the
 * adapter the other way).
 *
 * Invariants every implementation keeps:
 *  - I/O outside [0, size) throws InvalidArgumentError (checkDeviceRange) and
 *    write/trim on a read-only device throw ReadOnlyError; nothing changes.
 *    (Behind the NBD server a backend never sees such a request, since
 *    request-validation.ts refuses it first; the checks are for direct callers.)
 *  - Disk durability: a write is durable once a later `flush()` resolves, or
 *    when it resolves if it was written with `fua`. An interrupted write may be
 *    torn; an acknowledged one is never partly visible after a flush.
 *  - After `trim` resolves the range reads as zeros. NBD TRIM would allow any
 *    contents, but the oracle replays trims as zeros, so every device here
 *    zeroes (a raw file punches a hole, or writes zeros where it cannot).
 */
import { InvalidArgumentError, ReadOnlyError } from "./errors.js";

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
  trim?(offset: number, length: number, opts?: WriteOptions): Promise<void>;
  flush(): Promise<void>;
  close?(): Promise<void>;
}

/** Throws unless [offset, offset+length) lies inside a device of `size` bytes. */
export function checkDeviceRange(what: string, offset: number, length: number, size: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new InvalidArgumentError(`${what}: range [${offset}, +${length}) is outside the device (${size} bytes)`);
  }
}

/** Throws unless a change of [offset, offset+length) may go to the device: in range and writable. */
export function checkDeviceWrite(what: string, offset: number, length: number, device: { readonly size: number; readonly readOnly: boolean }): void {
  checkDeviceRange(what, offset, length, device.size);
  if (device.readOnly) throw new ReadOnlyError(`${what}: the device is read-only`);
}
