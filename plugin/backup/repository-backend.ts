/**
 * Instant recovery: a backup point's disks served read-only over NBD straight
 * from the repository (`backup serve`), one export per disk named by the disk
 * ("vm1", "vm1_1", …). `base:allocation` reports zero chunks as holes, so
 * `qemu-img`, `nbdcopy` and `nbdfuse` read a backup sparsely without a restore.
 */
import { NotFoundError, ReadOnlyError, UnsupportedError } from "../../src/errors.js";
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
  ) {}

  get size(): number {
    return this.image.size;
  }
  metaContexts(): readonly string[] {
    return [NBD_META_BASE_ALLOCATION];
  }
  read(offset: number, length: number): Promise<Buffer> {
    return this.image.read(offset, length);
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
    const cs = this.image.index.chunkSize;
    const out: StatusExtent[] = [];
    const stop = Math.min(this.size, offset + length);
    for (let pos = offset; pos < stop; ) {
      const i = Math.floor(pos / cs);
      const next = Math.min(stop, (i + 1) * cs);
      const flag = this.image.index.chunks[i] === null ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0;
      const last = out[out.length - 1];
      if (last && last.flag === flag) out[out.length - 1] = { offset: last.offset, length: last.length + next - pos, flag };
      else out.push({ offset: pos, length: next - pos, flag });
      pos = next;
    }
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
    if (!b) throw new NotFoundError(`no export "${name}" (exports: ${[...this.disks.keys()].join(", ")})`);
    return b;
  }
  async metaContexts(name: string): Promise<readonly string[]> {
    return (await this.open(name)).metaContexts();
  }
}
