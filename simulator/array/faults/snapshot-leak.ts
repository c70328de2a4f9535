/**
 * TEST-ONLY fault `snapshot-leak`: a snapshot export whose first block reads
 * from the live LUN, breaking docs/contract.md "Data plane" (snapshot exports
 * are immutable: every read returns the content at the cut). A write to the
 * LUN after the cut leaks into the snapshot, so a backup read from the export
 * is no longer the point in time it claims.
 *
 * Invariants: the export is opened, named, masked and counted by the real
 * provider (an export the session may not see is still unknown); only reads
 * (READ and sparse READ, which then reports no holes) of a snapshot export
 * change, and only in the range [0, block size); LUN exports and every other
 * operation pass through.
 */
import type { ExportProvider, NbdBackend, ReadPiece } from "../../../src/nbd/backend.js";
import type { ArrayBackend } from "../backend.js";
import { parseExportName } from "../exports/export-names.js";
import { overlay } from "./filter.js";

/** `provider` with snapshot exports leaking their first block from the live LUN in `store`. */
export function snapshotLeak(provider: ExportProvider, store: ArrayBackend): ExportProvider {
  return overlay(provider, {
    open: async (name, session) => {
      const backend = await provider.open(name, session);
      const target = parseExportName(name);
      if (target?.kind !== "snapshot") return backend;
      const live = store.openVolume({ lun: store.getSnapshot(target.snapshotId).lunId });
      const read = async (offset: number, length: number): Promise<Buffer> => {
        const data = await backend.read(offset, length);
        const end = Math.min(offset + length, live.blockSize, live.size);
        if (offset < end) (await live.read(offset, end - offset)).copy(data, 0);
        return data;
      };
      const readSparse = async (offset: number, length: number): Promise<ReadPiece[]> => [{ offset, data: await read(offset, length) }];
      return overlay<NbdBackend>(backend, { read, readSparse });
    },
  });
}
