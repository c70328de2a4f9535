/**
 * Instant recovery: a backup point's disks served read-only over NBD straight
 * from the repository (`backup serve`), one export per disk named by the disk
 * ("vm1", "vm1_1", …). `base:allocation` reports zero chunks as holes, so
 * `qemu-img`, `nbdcopy` and `nbdfuse` read a backup sparsely without a restore.
 *
 * Every read is verified (image-reader.ts): a chunk that fails its hash fails
 * that request with CorruptError, whose errno is EIO, so the NBD server
 * answers that one command with EIO (server-commands.ts maps `errno`) and the
 * connection and all other ranges keep working; the failure is logged here.
 * Block status walks only the map entries inside the request.
 */
import { NotFoundError, ReadOnlyError, SanboxError, UnsupportedError, errorMessage, quote } from "../../src/errors.js";
import type { Logger } from "../../src/log.js";
import type { ExportListing, ExportProvider, NbdBackend, StatusExtent } from "../../src/nbd/backend.js";
import { NBD_META_BASE_ALLOCATION, NBD_STATE_HOLE, NBD_STATE_ZERO } from "../../src/nbd/constants.js";
import type { ImageReader } from "./repository/image-reader.js";

export class RepositoryBackend implements NbdBackend {
  readonly readOnly = true;
  readonly canFlush = false;
  readonly canFua = false;
  readonly canTrim = false;
  readonly canZero = false;
  readonly canFastZero = false;
  readonly canCache = false;
  readonly canMultiConn = true;

  constructor(
    private readonly image: ImageReader,
    readonly description: string,
    private readonly log?: Logger,
  ) {}

  get size(): number {
    return this.image.size;
  }
  metaContexts(): readonly string[] {
    return [NBD_META_BASE_ALLOCATION];
  }
  async read(offset: number, length: number): Promise<Buffer> {
    try {
      return await this.image.read(offset, length);
    } catch (e: unknown) {
      if (e instanceof SanboxError && e.code === "CORRUPT") this.log?.error(`read [${offset}, +${length}) failed with EIO: ${errorMessage(e)}`);
      throw e;
    }
  }
  async write(): Promise<void> {
    throw new ReadOnlyError("a backup point is read-only");
  }
  async flush(): Promise<void> {}
  async trim(): Promise<void> {
    throw new ReadOnlyError("a backup point is read-only");
  }
  async zero(): Promise<void> {
    throw new ReadOnlyError("a backup point is read-only");
  }
  async cache(): Promise<void> {}
  async blockStatus(context: string, offset: number, length: number): Promise<StatusExtent[]> {
    if (context !== NBD_META_BASE_ALLOCATION) throw new UnsupportedError(`context ${context} not served`);
    const out: StatusExtent[] = [];
    const stop = Math.min(this.size, offset + length);
    let pos = offset;
    const hole = (to: number): void => {
      if (to > pos) out.push({ offset: pos, length: to - pos, flag: NBD_STATE_HOLE | NBD_STATE_ZERO });
    };
    for (const e of this.image.allocatedIn(offset, stop - offset)) {
      hole(e.offset);
      out.push({ offset: e.offset, length: e.length, flag: 0 });
      pos = e.offset + e.length;
    }
    hole(stop);
    return out;
  }
}

/** One export per disk of a point. */
export class PointExportProvider implements ExportProvider {
  constructor(private readonly disks: ReadonlyMap<string, RepositoryBackend>) {}

  async list(): Promise<ExportListing[]> {
    return [...this.disks].map(([name, b]) => ({ name, description: b.description }));
  }
  async open(name: string): Promise<NbdBackend> {
    const b = this.disks.get(name);
    if (!b) throw new NotFoundError(`no export ${quote(name)} (exports: ${[...this.disks.keys()].join(", ")})`);
    return b;
  }
  async metaContexts(name: string): Promise<readonly string[]> {
    return (await this.open(name)).metaContexts();
  }
}
