/**
 * The array's ExportProvider: every LUN as `lun/<name>` (read-write) and every
 * snapshot as `snap/<snapshot-id>/<lun-name>` (read-only), straight from the
 * store, filtered by LUN masking.
 *
 * Masking: the session's TLS-PSK identity names a host. A host lists and opens
 * only LUNs mapped to it or exported to it, and snapshots exported to it;
 * anything else is reported as unknown (NBD_REP_ERR_UNKNOWN), so a host cannot
 * probe for other hosts' LUNs. A session without TLS is the local host, which
 * sees everything: the array only allows that on its own Unix socket (or on TCP
 * when started with --insecure). See docs/contract.md "LUN masking".
 */
import { IoCounters } from "./io-counters.js";
import type { ExportListing, ExportProvider, NbdBackend, SessionInfo } from "../../../src/nbd/backend.js";
import { NotFoundError, SanboxError, quote } from "../../../src/errors.js";
import type { Extent } from "../../../src/extents/index.js";
import type { ArrayBackend, LunInfo, SnapshotInfo } from "../backend.js";
import { lunExportName, parseExportName, snapshotExportName } from "./export-names.js";
import { VolumeBackend } from "./volume-backend.js";

/** What a session may see: everything (local) or these LUN and snapshot ids. */
export type Access = { all: true } | { all: false; lunIds: ReadonlySet<string>; snapshotIds: ReadonlySet<string> };

export type AccessPolicy = (session: SessionInfo) => Access;

export class ArrayExportProvider implements ExportProvider {
  constructor(
    private readonly store: ArrayBackend,
    private readonly access: AccessPolicy,
    private readonly counters = new IoCounters(),
  ) {}

  async list(session: SessionInfo): Promise<ExportListing[]> {
    const a = this.access(session);
    const out: ExportListing[] = [];
    const names = new Map<string, string>();
    for (const l of this.store.listLuns()) {
      names.set(l.id, l.name);
      if (a.all || a.lunIds.has(l.id)) out.push({ name: lunExportName(l.name), description: `LUN ${l.name} (${l.naa})` });
    }
    for (const s of this.store.listSnapshots()) {
      const lunName = names.get(s.lunId);
      if (lunName === undefined) continue;
      if (a.all || a.snapshotIds.has(s.id)) out.push({ name: snapshotExportName(s.id, lunName), description: `snapshot ${s.name} of LUN ${lunName} (read-only)` });
    }
    return out;
  }

  private resolve(name: string, session: SessionInfo): { lun: LunInfo; snap: SnapshotInfo | undefined } {
    const t = parseExportName(name);
    const unknown = new NotFoundError(`export ${quote(name)} not found`);
    if (!t) throw unknown;
    const a = this.access(session);
    try {
      if (t.kind === "lun") {
        const lun = this.store.getLun(t.lunName);
        if (lun.name !== t.lunName || !(a.all || a.lunIds.has(lun.id))) throw unknown;
        return { lun, snap: undefined };
      }
      const snap = this.store.getSnapshot(t.snapshotId);
      const lun = this.store.getLun(snap.lunId);
      if (lun.name !== t.lunName || !(a.all || a.snapshotIds.has(snap.id))) throw unknown;
      return { lun, snap };
    } catch (e: unknown) {
      if (e instanceof SanboxError && e.code === "NOT_FOUND") throw unknown;
      throw e;
    }
  }

  /** Older snapshots of the same LUN: the bases a snapshot export offers dirty bitmaps for. */
  private dirtyBases(snap: SnapshotInfo): string[] {
    const all = this.store.listSnapshots({ lun: snap.lunId });
    const at = all.findIndex((s) => s.id === snap.id);
    return at <= 0 ? [] : all.slice(0, at).map((s) => s.id);
  }

  async metaContexts(name: string, session: SessionInfo): Promise<readonly string[]> {
    return (await this.open(name, session)).metaContexts();
  }

  async open(name: string, session: SessionInfo): Promise<NbdBackend> {
    const { lun, snap } = this.resolve(name, session);
    if (snap === undefined) {
      return new VolumeBackend(this.store.openVolume({ lun: lun.id }), { description: `LUN ${lun.name} (${lun.naa})`, counters: this.counters });
    }
    const target = snap.id;
    return new VolumeBackend(this.store.openVolume({ snapshot: snap.id }), {
      description: `snapshot ${snap.name} of LUN ${lun.name} (read-only)`,
      counters: this.counters,
      dirtyBases: this.dirtyBases(snap),
      dirty: async (base: string): Promise<Extent[]> => (await this.store.changedExtents(base, { snapshot: target })).extents,
    });
  }
}
