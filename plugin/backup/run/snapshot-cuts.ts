/**
 * The two cuts. T1: the group snapshot S1 of the datastore and every RDM LUN,
 * then the layout read back from S1 and the point begun. T2: quiesce, the
 * datastore alone as S2, resume.
 *
 * Invariants:
 *  - S1 is used only if the disks in it are the ones the inventory named; if a
 *    disk came or went in between, S1 is dropped and cut again (layoutRetries
 *    times), so the RDM set and the VMDK set come from one instant;
 *  - each snapshot is in `held` from the moment it exists, and the VM is
 *    marked quiesced from the moment it is: cleanup then deletes or resumes
 *    whatever a failure leaves;
 *  - the quiesce window holds only the S2 cut (and the "in-quiesce" stop): the
 *    VM is resumed in cutT2's own `finally`, whatever happens, not at cleanup.
 */
import { Datastore } from "../../../src/datastore/datastore.js";
import { readVm } from "../../../src/datastore/vm-files.js";
import { FailedPreconditionError } from "../../../src/errors.js";
import type { LunInfo, SnapshotSet } from "../array-driver.js";
import { ExportReader } from "../export-reader.js";
import { withRetry } from "../retry.js";
import type { BackupPoint } from "../repository/catalog.js";
import type { ImageBuilder } from "../repository/image-builder.js";
import type { PendingPoint } from "../repository/repository.js";
import type { FileState } from "../revert-plan.js";
import { layoutChanges, layoutFromVmInfo, type DiskLayout, type VmLayout } from "../vm-layout.js";
import { inventoryLayout, s1LunIds, type Discovery } from "./layout.js";
import { previousDisk } from "./previous-point.js";
import { openSnapshotExport, retry, type RunState } from "./run-state.js";
import { dropSnapshot, member, snapshotPrefix } from "./snapshots.js";

/** A VMDK as S1 holds it, and the image it is built into (over the parent's image when there is one). */
export interface VmdkAtS1 {
  readonly disk: DiskLayout & { flatPath: string };
  readonly s1: FileState;
  readonly image: ImageBuilder;
}

export interface AtT1 {
  readonly s1: SnapshotSet;
  /** When S1 was cut (ISO time). */
  readonly t1: string;
  /** The layout read from S1: authoritative. */
  readonly layout: VmLayout;
  readonly rdmLuns: ReadonlyMap<string, LunInfo>;
  /** NBD URI of S1's datastore member (its export is held; the revert reads it). */
  readonly s1DatastoreUri: string;
  readonly point: PendingPoint;
  readonly vmdks: readonly VmdkAtS1[];
}

export interface AtT2 {
  readonly s2: SnapshotSet;
  /** When S2 was cut (ISO time). */
  readonly t2: string;
  /** From the quiesce request to the resume's answer. */
  readonly quiesceWindowMs: number;
}

export async function cutT1(run: RunState, found: Discovery): Promise<AtT1> {
  let expected = found.expected;
  for (let attempt = 0; attempt <= run.layoutRetries; attempt++) {
    const lunIds = s1LunIds(found.dsLun, expected.rdmLuns);
    const set = await retry(run, "create S1", () => run.array.createSnapshot(`${snapshotPrefix(run.repo.id, run.vm)}${run.runId}-s1-${attempt}`, lunIds));
    run.held.snapshots.push(set);
    const t1 = new Date().toISOString();
    const uri = await openSnapshotExport(run, member(set, found.dsLun.id).id);
    const client = await ExportReader.open(uri, { connections: 1, log: run.log });
    try {
      const ds = await Datastore.open(client.asBlockDevice(), { readOnly: true });
      const layout = layoutFromVmInfo(run.vm, await readVm(ds, expected.layout.dir));
      const changes = layoutChanges(expected.layout, layout);
      if (changes.length > 0) {
        run.log.warn(`the VM's disks changed between discovery and T1 (${changes.join("; ")}); dropping S1 and starting over`);
        await dropSnapshot(run.array, set, run.log);
        run.held.snapshots.splice(run.held.snapshots.indexOf(set), 1);
        expected = await inventoryLayout(run, await retry(run, "get VM", () => run.hypervisor.getVm({ name: run.vm })));
        continue;
      }
      const point = await run.repo.begin(run.repo.newPointId(run.vm));
      run.held.pending = point;
      const vmdks = await vmdksAtS1(run, ds, layout, point, found.previous.parent);
      return { s1: set, t1, layout, rdmLuns: expected.rdmLuns, s1DatastoreUri: uri, point, vmdks };
    } finally {
      await client.close();
    }
  }
  throw new FailedPreconditionError(`the VM's disks kept changing during ${run.layoutRetries + 1} attempts to cut S1`);
}

/** Each VMDK's flat file in S1, with its image started over the parent's image of the same disk. */
async function vmdksAtS1(run: RunState, ds: Datastore, layout: VmLayout, point: PendingPoint, parent: BackupPoint | undefined): Promise<VmdkAtS1[]> {
  const out: VmdkAtS1[] = [];
  for (const d of layout.disks) {
    if (d.kind !== "vmdk" || d.flatPath === undefined) continue;
    const st = await ds.stat(d.flatPath);
    const map = await ds.extentMap(d.flatPath);
    const base = parent !== undefined && previousDisk(parent, d) !== undefined ? await run.repo.index(parent, d.name) : undefined;
    out.push({ disk: { ...d, flatPath: d.flatPath }, s1: { map, size: st.size }, image: point.image(base) });
  }
  return out;
}

export async function cutT2(run: RunState, dsLun: LunInfo): Promise<AtT2> {
  const started = Date.now();
  await retry(run, "quiesce", () => run.hypervisor.quiesceVm({ vm: run.vm, timeoutMs: run.quiesceTimeoutMs }));
  run.held.quiesced = true;
  let cut: { s2: SnapshotSet; t2: string };
  try {
    await run.stop("in-quiesce");
    const s2 = await retry(run, "create S2", () => run.array.createSnapshot(`${snapshotPrefix(run.repo.id, run.vm)}${run.runId}-s2`, [dsLun.id]));
    run.held.snapshots.push(s2);
    cut = { s2, t2: new Date().toISOString() };
  } finally {
    await resumeVm(run);
  }
  return { ...cut, quiesceWindowMs: Date.now() - started };
}

/** Ends the quiesce window. Deaf to the run's stop signal: a stopped run must still resume its VM. */
export async function resumeVm(run: RunState): Promise<void> {
  await withRetry("resume", () => run.hypervisor.resumeVm({ vm: run.vm }), { log: run.log });
  run.held.quiesced = false;
}
