/**
 * Restore: a disk of a backup point written to a raw file, an NBD export, or an
 * array LUN. It is the copy routine again: the image's stored chunks are
 * copied to the same offsets, and its holes (chunks of zeros, which the
 * repository never stores) are made to read as zeros.
 *
 * Invariants:
 *  - restore never overwrites by accident: an existing file, an existing LUN
 *    (createLun is idempotent on name and size, so it would silently hand
 *    back a LUN holding data) and any NBD export (it always exists) are
 *    refused unless `force`, with an error naming the target and `--force`;
 *  - the target stays thin: holes are never written as zero bytes. A fresh
 *    target (a new sparse file, a new LUN) reads zeros there already, so they
 *    are skipped; a forced file is truncated to nothing and regrown sparse; a
 *    forced LUN or NBD export gets NBD WRITE_ZEROES with trimming allowed
 *    (no NO_HOLE flag), which a thin target turns into deallocation. Only an
 *    export that offers no WRITE_ZEROES at all gets written zeros: there is
 *    no other way to make it read zeros;
 *  - a stop (`signal` aborted) starts no new copy; the partial file restore
 *    created is removed, the LUN export it opened deleted, and every step
 *    of that is reported through `log`, before the signal's reason is thrown;
 *  - a LUN this restore created itself is deleted when the restore does not
 *    finish (a stop or a failure), after its export: a half-written LUN
 *    under the name the user asked for would pass for a restored disk. A LUN
 *    that existed before (only reachable with --force) is never deleted,
 *    only reported as partly written. What was cleaned is one `log.warn`
 *    line, "cleaned up: …", as `backup run` prints it.
 */
import { open, rm, stat, truncate } from "node:fs/promises";
import type { BlockDevice } from "../../src/block-device.js";
import { AlreadyExistsError, InvalidArgumentError, SanboxError, errorMessage, fsError } from "../../src/errors.js";
import { subtract } from "../../src/extents/index.js";
import { silentLogger, type Logger } from "../../src/log.js";
import { FileBackend } from "../../src/nbd/backends/file-backend.js";
import { NbdClient } from "../../src/nbd/client.js";
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

/** A block device as a copy sink; its size is fixed, so the target must be large enough. */
function deviceSink(dev: BlockDevice): ImageSink {
  return {
    get size() {
      return dev.size;
    },
    write: (o, d) => dev.write(o, d),
    zero: async (o, l) => {
      if (dev.trim) return dev.trim(o, l);
      // The target offers no way to zero but writing: the one case where zero bytes go over the wire.
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

export interface RestoreOptions extends CopyOptions {
  array?: ArrayDriver;
  /** Overwrite an existing file, LUN or NBD export (--force). */
  force?: boolean;
  log?: Logger;
}

function refuse(what: string): never {
  throw new AlreadyExistsError(`${what}; restore never overwrites: pass --force to overwrite it`);
}

export async function restoreImage(image: ImageReader, target: RestoreTarget, opts: RestoreOptions = {}): Promise<RestoreResult> {
  const allocated = image.allocated();
  const copies = allocated.map((e) => ({ srcOffset: e.offset, dstOffset: e.offset, length: e.length }));
  const holes = subtract(image.size > 0 ? [{ offset: 0, length: image.size }] : [], allocated);
  const log = opts.log ?? silentLogger;
  const copyOpts: CopyOptions = { ...opts };
  if (target.kind === "file") return restoreToFile(image, target.path, copies, copyOpts, opts.force === true, log);
  let uri: string;
  /** Undoes what this restore made on the array (export, then a LUN it created); returns what it cleaned. */
  let release = async (_failed: boolean): Promise<string[]> => [];
  let fresh = false;
  let label: string;
  if (target.kind === "lun") {
    if (!opts.array) throw new InvalidArgumentError("restoring to a LUN needs the array (--array)");
    const array = opts.array;
    label = `lun:${target.name}`;
    const existing = await array.findLun({ name: target.name }).catch((e: unknown) => {
      if (e instanceof SanboxError && e.code === "NOT_FOUND") return undefined;
      throw e;
    });
    if (existing !== undefined && opts.force !== true) refuse(`LUN ${target.name} exists (${existing.size} bytes, ${existing.id})`);
    const lun = existing ?? (await array.createLun(target.name, image.size));
    fresh = existing === undefined;
    const undoLun = async (): Promise<string[]> => {
      if (!fresh) return [];
      return array.deleteLun(lun.id).then(
        () => [`LUN ${target.name} (${lun.id}, created by this restore)`],
        (err: unknown) => {
          log.warn(`could not delete LUN ${target.name} (${lun.id}), which this restore created: ${errorMessage(err)}; delete it with: sanbox lun delete ${target.name}`);
          return [];
        },
      );
    };
    const e = await array.exportLun(lun.id).catch(async (err: unknown) => {
      const cleaned = await undoLun();
      if (cleaned.length > 0) log.warn(`cleaned up: ${cleaned.join(", ")}`);
      throw err;
    });
    uri = e.uri;
    release = async (failed) => {
      const exportGone = await array.deleteExport(e.id).then(
        () => {
          log.info(`deleted export ${e.id} of LUN ${target.name}`);
          return true;
        },
        (err: unknown) => {
          log.warn(`could not delete export ${e.id}: ${errorMessage(err)}`);
          return false;
        },
      );
      // The LUN cannot go while its export stays.
      if (!failed || !exportGone) return [];
      return [`export ${e.id}`, ...(await undoLun())];
    };
  } else {
    if (opts.force !== true) refuse(`${target.uri} is an existing NBD export`);
    uri = target.uri;
    label = uri;
  }
  try {
    const client = await NbdClient.connect(uri);
    try {
      if (client.size < image.size) throw new InvalidArgumentError(`${label} holds ${client.size} bytes; the disk needs ${image.size}`);
      const dev: BlockDevice = {
        size: client.size,
        readOnly: client.readOnly,
        read: (o, l) => client.read(o, l),
        write: (o, d) => client.write(o, d),
        flush: () => (client.canFlush ? client.flush() : Promise.resolve()),
        // WRITE_ZEROES without NO_HOLE: the server may deallocate, which keeps a thin LUN thin.
        ...(client.canZero ? { trim: (o: number, l: number) => client.zero(o, l) } : {}),
      };
      const st = await copyExtents(image, { copies, zeros: fresh ? [] : holes }, deviceSink(dev), copyOpts);
      await dev.flush();
      return { ...st, target: label, size: image.size };
    } finally {
      await client.close();
    }
  } catch (e: unknown) {
    const cleaned = await release(true);
    release = async () => [];
    if (cleaned.length > 0) log.warn(`cleaned up: ${cleaned.join(", ")}`);
    if (target.kind === "lun" && !fresh) log.warn(`LUN ${target.name} is partly written (it existed; --force); restore it again`);
    throw e;
  } finally {
    await release(false);
  }
}

async function restoreToFile(image: ImageReader, path: string, copies: { srcOffset: number; dstOffset: number; length: number }[], opts: CopyOptions, force: boolean, log: Logger): Promise<RestoreResult> {
  const st = await stat(path).catch(() => undefined);
  if (st !== undefined) {
    if (!force) refuse(`${path} exists (${st.size} bytes)`);
    if (!st.isFile()) throw new InvalidArgumentError(`${path} is not a regular file`);
    // Truncated to nothing and regrown: a sparse file again, so holes need no writes at all.
    await truncate(path, 0);
  } else {
    // "wx": created here or refused, never a file someone made since the check.
    const created = await open(path, "wx").catch((e: unknown) => {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") refuse(`${path} exists`);
      throw fsError(e, `cannot create ${path}`);
    });
    await created.close();
  }
  const dev = await FileBackend.open(path, { size: image.size });
  try {
    const out = await copyExtents(image, { copies }, deviceSink(dev), opts);
    await dev.flush();
    return { ...out, target: path, size: image.size };
  } catch (e: unknown) {
    if (opts.signal?.aborted === true) {
      if (st === undefined) {
        await rm(path, { force: true });
        log.warn(`removed the partial file ${path}`);
      } else log.warn(`${path} is partly written (it existed; --force); restore it again`);
    }
    throw e;
  } finally {
    await dev.close();
  }
}
