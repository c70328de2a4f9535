/**
 * Restore: a disk of a backup point written to a raw file, an NBD export, or a
 * new array LUN. It is the copy routine again: the image's stored chunks are
 * copied to the same offsets, and (for a target that may hold old data) its
 * zero chunks are zeroed; a fresh file or LUN reads zeros there already.
 */
import type { BlockDevice } from "../../src/block-device.js";
import { InvalidArgumentError } from "../../src/errors.js";
import { subtract } from "../../src/extents/index.js";
import { FileBackend } from "../../src/nbd/backends/file-backend.js";
import { NbdClient } from "../../src/nbd/client.js";
import { rm } from "node:fs/promises";
import type { ArrayDriver } from "./array-driver.js";
import { copyExtents, type CopyOptions, type CopyStats } from "./copy-extents.js";
import type { ImageSink } from "./repository/image-builder.js";
import type { ImageReader } from "./repository/image-reader.js";

export type RestoreTarget = { kind: "file"; path: string } | { kind: "nbd"; uri: string } | { kind: "lun"; name: string };

export function parseRestoreTarget(to: string): RestoreTarget {
  if (to.startsWith("lun:")) {
    const name = to.slice(4);
    if (name === "") throw new InvalidArgumentError("--to lun:NAME needs a LUN name");
    return { kind: "lun", name };
  }
  if (/^nbds?(\+(unix|tcp|vsock))?:\/\//.test(to)) return { kind: "nbd", uri: to };
  if (to === "") throw new InvalidArgumentError("--to needs a file, an NBD URI or lun:NAME");
  return { kind: "file", path: to };
}

/** A block device as a copy sink (its size is fixed: the target must be large enough). */
function deviceSink(dev: BlockDevice, zeroWith: "write" | "trim"): ImageSink {
  return {
    get size() {
      return dev.size;
    },
    write: (o, d) => dev.write(o, d),
    zero: async (o, l) => {
      if (zeroWith === "trim" && dev.trim) return dev.trim(o, l);
      for (let at = 0; at < l; at += 1 << 20) await dev.write(o + at, Buffer.alloc(Math.min(1 << 20, l - at)));
    },
    resize: async (size) => {
      if (size > dev.size) throw new InvalidArgumentError(`the target holds ${dev.size} bytes; the disk needs ${size}`);
    },
  };
}

export interface RestoreResult extends CopyStats {
  target: string;
  size: number;
}

export async function restoreImage(image: ImageReader, target: RestoreTarget, opts: CopyOptions & { array?: ArrayDriver } = {}): Promise<RestoreResult> {
  const allocated = image.allocated();
  const copies = allocated.map((e) => ({ srcOffset: e.offset, dstOffset: e.offset, length: e.length }));
  const holes = subtract(image.size > 0 ? [{ offset: 0, length: image.size }] : [], allocated);
  if (target.kind === "file") {
    await rm(target.path, { force: true });
    const dev = await FileBackend.open(target.path, { create: true, size: image.size });
    try {
      const st = await copyExtents(image, { copies }, deviceSink(dev, "write"), opts);
      await dev.flush();
      return { ...st, target: target.path, size: image.size };
    } finally {
      await dev.close();
    }
  }
  let uri: string;
  let cleanup = async (): Promise<void> => undefined;
  let fresh = false;
  if (target.kind === "lun") {
    if (!opts.array) throw new InvalidArgumentError("restoring to a LUN needs the array (--array)");
    const array = opts.array;
    const lun = await array.createLun(target.name, image.size);
    const e = await array.exportLun(lun.id);
    uri = e.uri;
    fresh = true;
    cleanup = () => array.deleteExport(e.id);
  } else uri = target.uri;
  const client = await NbdClient.connect(uri);
  try {
    if (client.size < image.size) throw new InvalidArgumentError(`${uri} holds ${client.size} bytes; the disk needs ${image.size}`);
    const dev: BlockDevice = {
      size: client.size,
      readOnly: client.readOnly,
      read: (o, l) => client.read(o, l),
      write: (o, d) => client.write(o, d),
      flush: () => (client.canFlush ? client.flush() : Promise.resolve()),
      ...(client.canZero ? { trim: (o: number, l: number) => client.zero(o, l) } : {}),
    };
    const st = await copyExtents(image, { copies, zeros: fresh ? [] : holes }, deviceSink(dev, "trim"), opts);
    await dev.flush();
    return { ...st, target: target.kind === "lun" ? `lun:${target.name}` : uri, size: image.size };
  } finally {
    await client.close();
    await cleanup();
  }
}
