/**
 * Opens a block device named on a command line: an NBD URI (`nbd://…`,
 * `nbd+unix:///export?socket=…`, `nbds://…`) or a local raw file path.
 */
import type { BlockDevice } from "../block-device.js";
import { FileBackend } from "../nbd/backends/file-backend.js";
import { NbdClient } from "../nbd/client.js";
import { NbdDevice } from "../nbd/nbd-device.js";

export function isNbdUri(target: string): boolean {
  return /^nbds?(\+(unix|tcp|vsock))?:\/\//.test(target);
}

export async function openBlockDevice(target: string, opts: { readOnly?: boolean; create?: boolean; size?: number } = {}): Promise<BlockDevice> {
  if (isNbdUri(target)) return new NbdDevice(await NbdClient.connect(target));
  return FileBackend.open(target, opts);
}
