/**
 * The ArrayService client: the generic typed client (client.ts) over the
 * ArrayService table, plus how a client resolves what a user names. This is
 * the default array driver of the backup plugin, and what the CLI and the
 * hypervisor use.
 *
 *   const array = connectArray({ endpoint: "unix:/…/array.sock", token });
 *   const lun = await array.createLun({ name: "db", sizeBytes: 1 << 30 });
 *   for await (const m of array.getChangedBlocks({ baseSnapshotId, targetSnapshotId })) …
 *   array.close();
 *
 * References: users name LUNs, snapshots and hosts by name or by id. The
 * contract looks LUNs up by either (GetLun), snapshots only by id, hosts by
 * neither; the *ByRef helpers try the direct lookup first and fall back, so a
 * name that happens to look like an id still resolves, and every caller
 * resolves a reference the same way.
 */
import { NotFoundError, SanboxError, quote } from "../errors.js";
import { ARRAY_SERVICE, type ArrayService } from "./array-service-def.js";
import { connect, type ConnectOptions, type ServiceClient } from "./client.js";
import { allPages } from "./paging.js";
import type { v1 } from "./proto.js";
import type { CallOptions, Decoded } from "./service.js";

export type ArrayClientOptions = ConnectOptions;

export type ArrayClient = ServiceClient<ArrayService>;

/** Connects lazily (the first call opens the channel). */
export function connectArray(options: ArrayClientOptions): ArrayClient {
  return connect(ARRAY_SERVICE, { startHint: "sanbox array serve", ...options });
}

/**
 * `first()`, or `fallback()` when the array says there is no such object or it
 * rejects the reference's form (an id where a name was expected, or the reverse).
 */
async function orElse<T>(first: () => Promise<T>, fallback: () => Promise<T>): Promise<T> {
  try {
    return await first();
  } catch (e: unknown) {
    if (!(e instanceof SanboxError) || (e.code !== "NOT_FOUND" && e.code !== "INVALID_ARGUMENT")) throw e;
  }
  return fallback();
}

/** A LUN by name, else by id. `opts` (a deadline) applies to each lookup. */
export function lunByRef(array: ArrayClient, ref: string, opts?: CallOptions): Promise<Decoded<v1.ILun>> {
  return orElse(
    () => array.getLun({ name: ref }, opts),
    () => array.getLun({ lunId: ref }, opts),
  );
}

/** A snapshot by id, else by name (ListSnapshots: the contract has no lookup by name). */
export function snapshotByRef(array: ArrayClient, ref: string): Promise<Decoded<v1.ISnapshot>> {
  return orElse(
    () => array.getSnapshot({ snapshotId: ref }),
    async () => {
      const all = await allPages("ListSnapshots", (startingToken) => array.listSnapshots({ startingToken }).then((r) => ({ items: r.snapshots, next: r.nextToken })));
      const hit = all.find((s) => s.name === ref);
      if (!hit) throw new NotFoundError(`no snapshot named ${quote(ref)}`);
      return hit;
    },
  );
}

/**
 * A group snapshot by id, else by name. The contract has no lookup by group name,
 * so the name is searched among the groups the snapshot listing names.
 */
export function groupSnapshotByRef(array: ArrayClient, ref: string): Promise<Decoded<v1.IGroupSnapshot>> {
  return orElse(
    () => array.getGroupSnapshot({ groupSnapshotId: ref }),
    async () => {
      const all = await allPages("ListSnapshots", (startingToken) => array.listSnapshots({ startingToken }).then((r) => ({ items: r.snapshots, next: r.nextToken })));
      for (const id of new Set(all.map((s) => s.groupSnapshotId).filter((id) => id !== ""))) {
        const group = await array.getGroupSnapshot({ groupSnapshotId: id });
        if (group.name === ref) return group;
      }
      throw new NotFoundError(`no group snapshot named ${quote(ref)}`);
    },
  );
}

/** A host by name or id (ListHosts: the contract has no host lookup). */
export async function hostByRef(array: ArrayClient, ref: string): Promise<Decoded<v1.IHost>> {
  const all = await allPages("ListHosts", (startingToken) => array.listHosts({ startingToken }).then((r) => ({ items: r.hosts, next: r.nextToken })));
  const hit = all.find((h) => h.name === ref || h.hostId === ref);
  if (!hit) throw new NotFoundError(`no host named ${quote(ref)}`);
  return hit;
}
