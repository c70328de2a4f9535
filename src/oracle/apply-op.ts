/**
 * Performs one workload operation on the VM's disks. The caller (the hypervisor)
 * awaits it, then acknowledges the operation in its Journal, then starts the next:
 * that wait is what makes the chain causal across disks.
 */
import type { BlockDevice } from "../block-device.js";
import { InvalidArgumentError } from "../errors.js";
import type { Workload, WorkloadOp } from "./workload.js";

export interface DiskTarget {
  device: BlockDevice;
  /** VMDKs: grow the disk to `size` bytes (the flat file and its descriptor). */
  grow?(size: number): Promise<void>;
}

export async function applyOp(workload: Workload, op: WorkloadOp, targets: readonly DiskTarget[]): Promise<void> {
  const t = targets[op.disk];
  if (t === undefined) throw new InvalidArgumentError(`operation ${op.seq}: no target for disk ${op.disk} (${op.diskId})`);
  switch (op.kind) {
    case "write":
      await t.device.write(op.offset, workload.stampFor(op));
      return;
    case "trim":
      // The oracle expects a trimmed stamp to read as zeros: the BlockDevice trim contract.
      if (t.device.trim !== undefined) await t.device.trim(op.offset, op.length);
      else await t.device.write(op.offset, Buffer.alloc(op.length));
      return;
    case "grow":
      if (t.grow === undefined) throw new InvalidArgumentError(`operation ${op.seq}: disk ${op.diskId} cannot grow`);
      await t.grow(op.size);
      return;
  }
}
