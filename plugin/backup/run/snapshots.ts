/**
 * The array snapshots a backup run makes, by name: every one is called
 * `sanbox-backup-<repo id>-<vm>-<run id>-s1-<attempt>` (S1, a group) or
 * `…-<run id>-s2` (S2, the datastore alone).
 *
 * Invariants:
 *  - a name under `snapshotPrefix(repo, vm)` belongs to this repository's
 *    backups of that VM and to nothing else, so a later run may delete any such
 *    snapshot that is not the latest point's base (a killed run left it);
 *  - deleting a snapshot that is already gone is success (NOT_FOUND is the end
 *    state we wanted); any other failure is logged, never thrown, because
 *    dropSnapshot runs while cleaning up after another error.
 */
import { FailedPreconditionError, SanboxError, errorMessage } from "../../../src/errors.js";
import type { Logger } from "../../../src/log.js";
import type { ArrayDriver, SnapshotInfo, SnapshotSet } from "../array-driver.js";
import { withRetry } from "../retry.js";

export const SNAPSHOT_PREFIX = "sanbox-backup-";

/**
 * Name prefix of every snapshot a backup of `vm` into one repository makes (what
 * leak cleanup looks for): another repository's bases for the same VM are not ours.
 */
export function snapshotPrefix(repoId: string, vm: string): string {
  return `${SNAPSHOT_PREFIX}${repoId}-${vm}-`;
}

/** The member of `set` that snapshots `lunId`. */
export function member(set: SnapshotSet, lunId: string): SnapshotInfo {
  const found = set.members.find((x) => x.lunId === lunId);
  if (found === undefined) throw new FailedPreconditionError(`snapshot ${set.name} has no member for LUN ${lunId}`);
  return found;
}

/** Deletes `set` (a group with all its members), retrying transient failures; never throws. */
export async function dropSnapshot(array: ArrayDriver, set: SnapshotSet, log: Logger): Promise<void> {
  try {
    await withRetry(`delete snapshot ${set.name}`, () => array.deleteSnapshot(set), { log });
  } catch (e: unknown) {
    if (!(e instanceof SanboxError && e.code === "NOT_FOUND")) log.error(`could not delete snapshot ${set.name}: ${errorMessage(e)}`);
  }
}

/**
 * Deletes the snapshots named `prefix…` (this repository's, of this VM) except the
 * base of the latest point: those were left by a run that was killed. Returns the names deleted.
 */
export async function deleteLeakedSnapshots(array: ArrayDriver, prefix: string, lunIds: readonly string[], keep: readonly string[], log: Logger): Promise<string[]> {
  const sets = new Map<string, { groupId: string; name: string; members: { id: string }[] }>();
  for (const lunId of lunIds) {
    for (const s of await array.listSnapshots(lunId)) {
      const name = s.groupId !== "" ? s.name.replace(/@[^@]*$/, "") : s.name;
      if (!name.startsWith(prefix)) continue;
      const key = s.groupId !== "" ? s.groupId : s.id;
      if (keep.includes(name) || (s.groupId !== "" && keep.includes(s.groupId))) continue;
      const have = sets.get(key);
      if (have) have.members.push({ id: s.id });
      else sets.set(key, { groupId: s.groupId, name, members: [{ id: s.id }] });
    }
  }
  const out: string[] = [];
  for (const s of sets.values()) {
    log.info(`deleting snapshot ${s.name} left behind by an earlier run`);
    await withRetry(`delete snapshot ${s.name}`, () => array.deleteSnapshot(s), { log });
    out.push(s.name);
  }
  return out;
}
