/**
 * A datastore LUN mounted by the hypervisor: one path to the LUN's export
 * (LunPath: reconnects after an array restart, deadline on every request) and
 * one read-write Datastore on it (auto-commit: an acknowledged guest write that
 * allocated is durable). Every VM on the datastore shares the one instance; the
 * Datastore serialises their operations.
 *
 * After a path fault (a broken connection, or a change that timed out) the
 * Datastore in memory may no longer match the LUN: a commit may have failed
 * half-way, which leaves it unusable, or the array may have lost unflushed
 * writes. A commit can also fail without a fault (an error reply, a full
 * datastore), with the same result. So the next `datastore()` after either reopens it from the durable
 * superblock, on a new handle, and revokes the old handle: whoever still holds
 * the old instance (a VM's open VMDK) fails rather than write with a stale
 * allocation map. A VM's workload therefore fails on a datastore fault and is
 * started again on the new instance.
 *
 * Mounting a LUN that holds no datastore yet formats it, but only when it is
 * blank: both superblock slots all zeros (a fresh thin LUN) and no lease area
 * other than a lease record. A LUN that holds something else, or a damaged
 * datastore, is refused (CORRUPT), never overwritten.
 *
 * Single writer (docs/datastore-format.md "The writer lease"): a mount takes
 * the LUN's writer lease before it formats or opens the datastore for writing,
 * and a LUN whose lease another hypervisor holds is refused
 * (FAILED_PRECONDITION naming it). The LeaseKeeper heartbeats; when the lease
 * lapses or is lost, the mount is fenced exactly as after a path fault (the
 * handle revoked), and the next `datastore()` first takes the lease again, then
 * reopens. The check that a LUN is blank or a datastore comes before the lease
 * is written, so a LUN holding anything else is never touched.
 */
import type { BlockDevice } from "../../src/block-device.js";
import { FailedPreconditionError } from "../../src/errors.js";
import { Datastore } from "../../src/datastore/datastore.js";
import { SUPERBLOCK_OFFSETS, SUPERBLOCK_SIZE } from "../../src/datastore/format.js";
import { LEASE_OFFSET, LEASE_SIZE, decodeLease } from "../../src/datastore/lease.js";
import type { Logger } from "../../src/log.js";
import type { ArrayLink, LunInfo } from "./array-link.js";
import { LeaseKeeper, type LeaseSettings } from "./lease-keeper.js";
import type { LunPath, PathHandle } from "./lun-path.js";

/** Both superblock slots all zeros, and nothing but a lease record (or zeros) in the lease area. */
async function isBlank(dev: BlockDevice): Promise<boolean> {
  for (const off of SUPERBLOCK_OFFSETS) {
    const b = await dev.read(off, SUPERBLOCK_SIZE);
    if (b.some((x) => x !== 0)) return false;
  }
  return decodeLease(await dev.read(LEASE_OFFSET, LEASE_SIZE)).kind !== "damaged";
}

interface Instance {
  ds: Datastore;
  handle: PathHandle;
  /** path.faults and fences when it was opened: either moving makes it stale. */
  faults: number;
  fences: number;
}

export class MountedDatastore {
  /** Whether this mount formatted the LUN. */
  readonly formatted: boolean;
  private current: Instance;
  /** A reopen in progress, shared by concurrent callers. */
  private reopening: Promise<Datastore> | undefined;
  /** How often the lease keeper fenced this mount. */
  private fences = 0;
  /** The handle a reopen is opening, so a fence meanwhile revokes it too. */
  private opening: PathHandle | undefined;
  private keeper: LeaseKeeper | undefined;

  private constructor(
    readonly lunId: string,
    readonly lunName: string,
    readonly path: LunPath,
    first: Instance,
    formatted: boolean,
    private readonly log: Logger,
  ) {
    this.current = first;
    this.formatted = formatted;
  }

  static async mount(link: ArrayLink, lun: LunInfo, log: Logger, opts: { format: boolean; lease: LeaseSettings }): Promise<MountedDatastore> {
    const name = `datastore ${lun.name} (lun/${lun.name})`;
    const path = await link.openPath(lun.lunId, name);
    let keeper: LeaseKeeper | undefined;
    let mount: MountedDatastore | undefined;
    try {
      const handle = path.handle();
      const faults = path.faults;
      // Before the lease is written: the LUN must be blank (and may be formatted) or hold a datastore.
      if (!(opts.format && (await isBlank(handle)))) await Datastore.open(handle, { readOnly: true });
      keeper = new LeaseKeeper(path.handle(), lun.lunId, name, opts.lease, (why) => mount?.fence(why), log);
      await keeper.take();
      let ds: Datastore;
      let formatted = false;
      if (opts.format && (await isBlank(handle))) {
        log.info(`formatting blank LUN ${lun.name} (${lun.naa}) as a datastore`);
        ds = await Datastore.format(handle, { label: lun.name });
        formatted = true;
      } else {
        ds = await Datastore.open(handle);
      }
      log.info(`mounted datastore ${lun.name} (generation ${ds.generation})`);
      mount = new MountedDatastore(lun.lunId, lun.name, path, { ds, handle, faults, fences: 0 }, formatted, log);
      mount.keeper = keeper;
      return mount;
    } catch (e: unknown) {
      await keeper?.stop(true).catch(() => undefined);
      await path.close().catch(() => undefined);
      throw e;
    }
  }

  /**
   * The Datastore, reopened from the LUN first if the path faulted or the lease
   * lapsed since it was opened; with the lease taken again first if it lapsed
   * (FAILED_PRECONDITION naming the holder when another hypervisor has it now).
   */
  async datastore(): Promise<Datastore> {
    await this.keeper?.ensure();
    // A commit can fail without a path fault or a fence (an error reply from the array, a
    // full or fragmented datastore): that instance then refuses everything, so reopen it too.
    if (this.path.faults === this.current.faults && this.fences === this.current.fences && !this.current.ds.unusable) return this.current.ds;
    this.reopening ??= this.reopen().finally(() => (this.reopening = undefined));
    return this.reopening;
  }

  /** Stops every write through the current instance; the next `datastore()` retakes the lease and reopens. */
  private fence(why: string): void {
    this.fences++;
    this.current.handle.revoke(`fenced: ${why}`);
    // A reopen in progress is opening a new handle under the lease that just lapsed: that one
    // must not write either. Its open fails, and the next datastore() takes the lease first.
    this.opening?.revoke(`fenced: ${why}`);
  }

  private async reopen(): Promise<Datastore> {
    const faults = this.path.faults;
    const fences = this.fences;
    const after = faults !== this.current.faults ? "a path fault" : fences !== this.current.fences ? "its writer lease lapsed" : "a failed commit";
    this.current.handle.revoke();
    const handle = this.path.handle();
    this.opening = handle;
    let ds: Datastore;
    try {
      ds = await Datastore.open(handle);
    } finally {
      this.opening = undefined;
    }
    if (handle.revoked) throw new FailedPreconditionError(`datastore ${this.lunName}: fenced while it was being reopened (the writer lease lapsed); retry`);
    this.current = { ds, handle, faults, fences };
    this.log.warn(`datastore ${this.lunName}: reopened at generation ${ds.generation} after ${after}`);
    return ds;
  }

  async unmount(): Promise<void> {
    const fresh = this.path.faults === this.current.faults && this.fences === this.current.fences && this.keeper?.valid !== false;
    try {
      // After a fault the instance may be stale; auto-commit left nothing to commit anyway.
      if (fresh) {
        await this.current.ds.close();
        await this.current.handle.flush();
      }
    } finally {
      try {
        // Released only when we still hold it: a clean unmount frees the datastore at once.
        await this.keeper?.stop(true);
      } finally {
        await this.path.close();
      }
    }
  }
}
