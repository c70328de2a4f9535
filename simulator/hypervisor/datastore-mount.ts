/**
 * A datastore LUN mounted by the hypervisor: one NBD connection to the LUN's
 * export and one read-write Datastore on it (auto-commit: an acknowledged guest
 * write that allocated is durable). Every VM on the datastore shares the one
 * instance; the Datastore serialises their operations.
 *
 * Mounting a LUN that holds no datastore yet formats it, but only when it is
 * blank: both superblock slots all zeros (a fresh thin LUN). A LUN that holds
 * something else, or a damaged datastore, is refused (CORRUPT), never overwritten.
 */
import { NbdDevice } from "../../src/nbd/nbd-device.js";
import { Datastore } from "../../src/datastore/datastore.js";
import { SUPERBLOCK_OFFSETS, SUPERBLOCK_SIZE } from "../../src/datastore/format.js";
import type { Logger } from "../../src/log.js";
import type { ArrayLink, LunInfo } from "./array-link.js";

export interface MountedDatastore {
  readonly lunId: string;
  readonly lunName: string;
  readonly ds: Datastore;
  readonly device: NbdDevice;
  /** Whether this mount formatted the LUN. */
  readonly formatted: boolean;
  unmount(): Promise<void>;
}

async function isBlank(dev: NbdDevice): Promise<boolean> {
  for (const off of SUPERBLOCK_OFFSETS) {
    const b = await dev.read(off, SUPERBLOCK_SIZE);
    if (b.some((x) => x !== 0)) return false;
  }
  return true;
}

export async function mountDatastore(link: ArrayLink, lun: LunInfo, log: Logger, opts: { format: boolean }): Promise<MountedDatastore> {
  const client = await link.openLun(lun.lunId);
  const device = new NbdDevice(client);
  try {
    let ds: Datastore;
    let formatted = false;
    if (opts.format && (await isBlank(device))) {
      log.info(`formatting blank LUN ${lun.name} (${lun.naa}) as a datastore`);
      ds = await Datastore.format(device, { label: lun.name });
      formatted = true;
    } else {
      ds = await Datastore.open(device);
    }
    log.info(`mounted datastore ${lun.name} (generation ${ds.generation})`);
    return {
      lunId: lun.lunId,
      lunName: lun.name,
      ds,
      device,
      formatted,
      unmount: async () => {
        try {
          await ds.close();
          await device.flush();
        } finally {
          await device.close();
        }
      },
    };
  } catch (e: unknown) {
    await device.close().catch(() => undefined);
    throw e;
  }
}
