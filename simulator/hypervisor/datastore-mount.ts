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
 * writes. So the next `datastore()` after a fault reopens it from the durable
 * superblock, on a new handle, and revokes the old handle: whoever still holds
 * the old instance (a VM's open VMDK) fails rather than write with a stale
 * allocation map. A VM's workload therefore fails on a datastore fault and is
 * started again on the new instance.
 *
 * Mounting a LUN that holds no datastore yet formats it, but only when it is
 * blank: both superblock slots all zeros (a fresh thin LUN). A LUN that holds
 * something else, or a damaged datastore, is refused (CORRUPT), never overwritten.
 */
import type { BlockDevice } from "../../src/block-device.js";
import { Datastore } from "../../src/datastore/datastore.js";
import { SUPERBLOCK_OFFSETS, SUPERBLOCK_SIZE } from "../../src/datastore/format.js";
import type { Logger } from "../../src/log.js";
import type { ArrayLink, LunInfo } from "./array-link.js";
import type { LunPath, PathHandle } from "./lun-path.js";

async function isBlank(dev: BlockDevice): Promise<boolean> {
  for (const off of SUPERBLOCK_OFFSETS) {
    const b = await dev.read(off, SUPERBLOCK_SIZE);
    if (b.some((x) => x !== 0)) return false;
  }
  return true;
}

export class MountedDatastore {
  /** Whether this mount formatted the LUN. */
  readonly formatted: boolean;
  private current: { ds: Datastore; handle: PathHandle; faults: number };
  /** A reopen in progress, shared by concurrent callers. */
  private reopening: Promise<Datastore> | undefined;

  private constructor(
    readonly lunId: string,
    readonly lunName: string,
    readonly path: LunPath,
    first: { ds: Datastore; handle: PathHandle; faults: number },
    formatted: boolean,
    private readonly log: Logger,
  ) {
    this.current = first;
    this.formatted = formatted;
  }

  static async mount(link: ArrayLink, lun: LunInfo, log: Logger, opts: { format: boolean }): Promise<MountedDatastore> {
    const path = await link.openPath(lun.lunId, `datastore ${lun.name} (lun/${lun.name})`);
    try {
      const handle = path.handle();
      const faults = path.faults;
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
      return new MountedDatastore(lun.lunId, lun.name, path, { ds, handle, faults }, formatted, log);
    } catch (e: unknown) {
      await path.close().catch(() => undefined);
      throw e;
    }
  }

  /** The Datastore, reopened from the LUN first if the path faulted since it was opened. */
  datastore(): Promise<Datastore> {
    if (this.path.faults === this.current.faults) return Promise.resolve(this.current.ds);
    this.reopening ??= this.reopen().finally(() => (this.reopening = undefined));
    return this.reopening;
  }

  private async reopen(): Promise<Datastore> {
    const faults = this.path.faults;
    this.current.handle.revoke();
    const handle = this.path.handle();
    const ds = await Datastore.open(handle);
    this.current = { ds, handle, faults };
    this.log.warn(`datastore ${this.lunName}: reopened at generation ${ds.generation} after a path fault`);
    return ds;
  }

  async unmount(): Promise<void> {
    try {
      // After a fault the instance may be stale; auto-commit left nothing to commit anyway.
      if (this.path.faults === this.current.faults) {
        await this.current.ds.close();
        await this.current.handle.flush();
      }
    } finally {
      await this.path.close();
    }
  }
}
