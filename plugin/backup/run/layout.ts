/**
 * The layout phase ("discover"): before any snapshot, find out what the VM is
 * made of and what the run builds on. The hypervisor's inventory gives the
 * disks and the datastore LUN, the array maps each RDM's NAA id to its LUN,
 * the repository gives the previous point, and snapshots a killed run left
 * behind are deleted.
 *
 * Invariants:
 *  - nothing here creates anything on the array: a failure in this phase
 *    leaves nothing for cleanup;
 *  - the inventory is only what S1 must match; the layout read from S1 itself
 *    (cutT1) is the one the backup uses;
 *  - the previous point's base is never treated as a leak, --full included,
 *    since it is the base of the next incremental until this run commits; a
 *    base is deleted only after the point that replaces it has committed
 *    (end-of-run.ts). Only snapshots under this repository's and VM's prefix
 *    that no committed point keeps are leaks.
 */
import type { Decoded } from "../../../src/rpc/service.js";
import { hv1 } from "../../../src/rpc/hypervisor-proto.js";
import type { LunInfo } from "../array-driver.js";
import { layoutFromInventory, type VmLayout } from "../vm-layout.js";
import { findPreviousPoint, type PreviousPoint } from "./previous-point.js";
import { retry, type RunState } from "./run-state.js";
import { deleteLeakedSnapshots, snapshotPrefix } from "./snapshots.js";

/** The disks as the hypervisor reports them, with each RDM's LUN (by disk name). */
export interface ExpectedLayout {
  readonly layout: VmLayout;
  readonly rdmLuns: ReadonlyMap<string, LunInfo>;
}

export interface Discovery {
  /** The datastore LUN the VM lives on. */
  readonly dsLun: LunInfo;
  /** What S1 must match (else S1 is dropped and cut again). */
  readonly expected: ExpectedLayout;
  readonly previous: PreviousPoint;
  /** Names of snapshots of earlier runs deleted here. */
  readonly deleted: string[];
  /** The workload the hypervisor reports running in the VM ("dependent"), recorded in the point. */
  readonly workload?: string;
}

/** The inventory's disks and the array LUN behind each RDM. */
export async function inventoryLayout(run: RunState, inventory: Decoded<hv1.IVm>): Promise<ExpectedLayout> {
  const layout = layoutFromInventory(inventory);
  const rdmLuns = new Map<string, LunInfo>();
  for (const d of layout.disks) if (d.kind === "rdm") rdmLuns.set(d.name, await retry(run, "find RDM LUN", () => run.array.findLun({ naa: d.naa ?? "" })));
  return { layout, rdmLuns };
}

/** Every LUN a group snapshot S1 covers: the datastore first, then the RDMs. */
export function s1LunIds(dsLun: LunInfo, rdmLuns: ReadonlyMap<string, LunInfo>): string[] {
  return [dsLun.id, ...[...rdmLuns.values()].map((l) => l.id)];
}

export async function discover(run: RunState): Promise<Discovery> {
  const removedTmp = await run.repo.cleanup();
  if (removedTmp.length > 0) run.log.info(`removed ${removedTmp.length} unfinished point(s) of earlier runs: ${removedTmp.join(", ")}`);
  const inventory = await retry(run, "get VM", () => run.hypervisor.getVm({ name: run.vm }));
  if (inventory.workload?.quiesced === true) {
    // We hold the VM's lock, so no other backup is in its T2 window: a killed run left the VM quiesced.
    run.log.warn(`VM ${run.vm} is still quiesced by an earlier run that died; resuming it`);
    await retry(run, "resume", () => run.hypervisor.resumeVm({ vm: run.vm }));
  }
  const dsLun = await retry(run, "find datastore LUN", () => run.array.findLun({ id: inventory.datastoreLunId }));
  const expected = await inventoryLayout(run, inventory);
  const previous = await findPreviousPoint(run.repo, run.vm, run.full, run.log);
  const keep = previous.latest ? [previous.latest.base.groupSnapshotId, previous.latest.base.name] : [];
  const deleted = await deleteLeakedSnapshots(run.array, snapshotPrefix(run.repo.id, run.vm), s1LunIds(dsLun, expected.rdmLuns), keep, run.log);
  // The oracle applies to a point only if the VM ran the dependent-write workload when it was taken.
  const w = inventory.workload;
  const workload = w !== undefined && w !== null && w.workload !== "" && w.state === hv1.WorkloadState.RUNNING ? w.workload : undefined;
  return { dsLun, expected, previous, deleted, ...(workload !== undefined ? { workload } : {}) };
}
