/**
 * TEST-ONLY fault `group-skew`: a group snapshot that is NOT write-order
 * consistent, breaking docs/contract.md "Snapshots and group snapshots" (every
 * member is cut at the same point of any stream of dependent writes). A
 * CreateSnapshot of several LUNs cuts each member as a plain single-LUN
 * snapshot through the real service, GROUP_SKEW_MS apart, while writes go on;
 * a write that depends on an earlier one can land in an earlier-cut member
 * without its cause, which a crash-consistent restore must never show.
 *
 * The fake group is kept here, in memory (gone when the daemon restarts):
 * id `grp-skew-…`, answered by GetGroupSnapshot and DeleteGroupSnapshot, its
 * members reported with that group id. Everything else keeps the real rules:
 * LUN lookups and NOT_FOUND before anything is cut, idempotence on name with
 * the same LUN set (ALREADY_EXISTS for another), member deletes through the
 * real DeleteSnapshot (so an exported member still refuses). What the fake
 * does not emulate: ListSnapshots and DeleteSnapshot see the members as plain
 * snapshots (no group id, deletable alone), and concurrent creates of one name
 * are not serialised.
 */
import { randomBytes } from "node:crypto";
import { AlreadyExistsError, InvalidArgumentError, SanboxError, quote } from "../../../src/errors.js";
import type { ArrayServiceImpl } from "../../../src/rpc/array-service-def.js";
import { v1 } from "../../../src/rpc/proto.js";
import { overlay, type CallContextOf } from "./filter.js";

/** Delay between member cuts. */
export const GROUP_SKEW_MS = 200;

interface FakeGroup {
  name: string;
  lunIds: string[];
  snapshotIds: string[];
  creationTime: string;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function isNotFound(e: unknown): boolean {
  return e instanceof SanboxError && e.code === "NOT_FOUND";
}

/** The LUN a `lun_ids` entry names: an id, or (as the real array also accepts) a name. */
async function lunOf(next: ArrayServiceImpl, ref: string, ctx: CallContextOf): Promise<v1.ILun> {
  try {
    return await next.getLun(v1.GetLunRequest.create({ lunId: ref }), ctx);
  } catch (e: unknown) {
    if (!isNotFound(e)) throw e;
    try {
      return await next.getLun(v1.GetLunRequest.create({ name: ref }), ctx);
    } catch {
      throw e;
    }
  }
}

export function groupSkew(next: ArrayServiceImpl, skewMs: number = GROUP_SKEW_MS): ArrayServiceImpl {
  const groups = new Map<string, FakeGroup>();

  const members = (id: string, group: FakeGroup, ctx: CallContextOf): Promise<v1.ISnapshot[]> =>
    Promise.all(
      group.snapshotIds.map(async (snapshotId) => ({ ...(await next.getSnapshot(v1.GetSnapshotRequest.create({ snapshotId }), ctx)), groupSnapshotId: id })),
    );

  return overlay(next, {
    createSnapshot: async (req, ctx) => {
      if (req.lunIds.length < 2) return next.createSnapshot(req, ctx);
      if (req.name === "") throw new InvalidArgumentError("name is required");
      if (req.lunIds.some((ref) => ref === "")) throw new InvalidArgumentError("lun_ids contains an empty id");
      if (new Set(req.lunIds).size !== req.lunIds.length) throw new InvalidArgumentError("lun_ids lists the same LUN twice");
      const lunIds: string[] = [];
      for (const ref of req.lunIds) lunIds.push((await lunOf(next, ref, ctx)).lunId ?? ref);
      for (const [id, group] of groups) {
        if (group.name !== req.name) continue;
        if (group.lunIds.length !== lunIds.length || !lunIds.every((x) => group.lunIds.includes(x))) {
          throw new AlreadyExistsError(`a group snapshot named ${quote(req.name)} already exists for other LUNs`);
        }
        return { snapshots: await members(id, group, ctx), groupSnapshotId: id };
      }
      const id = `grp-skew-${randomBytes(6).toString("hex")}`;
      const creationTime = new Date().toISOString();
      const snapshots: v1.ISnapshot[] = [];
      for (const [i, lunId] of lunIds.entries()) {
        if (i > 0) await sleep(skewMs);
        const cut = await next.createSnapshot(v1.CreateSnapshotRequest.create({ name: `${req.name}.m${i}`, lunIds: [lunId] }), ctx);
        for (const s of cut.snapshots ?? []) snapshots.push({ ...s, groupSnapshotId: id });
      }
      groups.set(id, { name: req.name, lunIds, snapshotIds: snapshots.map((s) => s.snapshotId ?? ""), creationTime });
      return { snapshots, groupSnapshotId: id };
    },

    getGroupSnapshot: async (req, ctx) => {
      const group = groups.get(req.groupSnapshotId);
      if (group === undefined) return next.getGroupSnapshot(req, ctx);
      const snapshots = await members(req.groupSnapshotId, group, ctx);
      return { groupSnapshotId: req.groupSnapshotId, name: group.name, snapshots, creationTime: group.creationTime, readyToUse: true };
    },

    deleteGroupSnapshot: async (req, ctx) => {
      const group = groups.get(req.groupSnapshotId);
      if (group === undefined) return next.deleteGroupSnapshot(req, ctx);
      if (req.snapshotIds.length > 0) {
        const want = new Set(req.snapshotIds);
        if (want.size !== group.snapshotIds.length || !group.snapshotIds.every((s) => want.has(s))) {
          throw new InvalidArgumentError(`snapshot_ids do not match the members of group snapshot ${req.groupSnapshotId}`);
        }
      }
      // Members already deleted stay deleted if a later one refuses; a retry finishes the job.
      for (const snapshotId of group.snapshotIds) await next.deleteSnapshot(v1.DeleteSnapshotRequest.create({ snapshotId }), ctx);
      groups.delete(req.groupSnapshotId);
      return {};
    },
  });
}
