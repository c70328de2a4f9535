/**
 * NBD export names of the array (DESIGN "Data plane"):
 *   lun/<lun-name>                  the live LUN, read-write
 *   snap/<snapshot-id>/<lun-name>   a snapshot, read-only
 * The LUN name in a snapshot export is informative (tools show it); the
 * snapshot id alone identifies the snapshot, and a mismatching name is unknown.
 */
export type ExportTarget = { kind: "lun"; lunName: string } | { kind: "snapshot"; snapshotId: string; lunName: string };

export function lunExportName(lunName: string): string {
  return `lun/${lunName}`;
}

export function snapshotExportName(snapshotId: string, lunName: string): string {
  return `snap/${snapshotId}/${lunName}`;
}

export function parseExportName(name: string): ExportTarget | undefined {
  const parts = name.split("/");
  if (parts[0] === "lun" && parts.length === 2 && parts[1] !== undefined && parts[1] !== "") return { kind: "lun", lunName: parts[1] };
  if (parts[0] === "snap" && parts.length === 3 && parts[1] !== undefined && parts[1] !== "" && parts[2] !== undefined && parts[2] !== "") {
    return { kind: "snapshot", snapshotId: parts[1], lunName: parts[2] };
  }
  return undefined;
}
