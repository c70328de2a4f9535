/**
 * The simplest ExportProvider: one backend under one name (default ""), shared by
 * every connection (what `sanbox nbd serve` and tests use). Connections get a
 * handle whose close() is a no-op, so the shared backend outlives any one client;
 * the owner closes it after the server stops.
 */
import { NotFoundError, quote } from "../errors.js";
import type { ExportListing, ExportProvider, NbdBackend, ReadPiece } from "./backend.js";

export class SingleExportProvider implements ExportProvider {
  constructor(
    private readonly backend: NbdBackend,
    private readonly name = "",
  ) {}

  async list(): Promise<ExportListing[]> {
    const e: ExportListing = { name: this.name };
    if (this.backend.description !== undefined) e.description = this.backend.description;
    return [e];
  }

  async open(name: string): Promise<NbdBackend> {
    if (name !== this.name) throw new NotFoundError(`export ${quote(name)} not found (this server exports ${quote(this.name)})`);
    return sharedHandle(this.backend);
  }

  async metaContexts(name: string): Promise<readonly string[]> {
    if (name !== this.name) throw new NotFoundError(`export ${quote(name)} not found`);
    return this.backend.metaContexts();
  }
}

/** A per-connection view of a shared backend: same capabilities and I/O, close() does nothing. */
export function sharedHandle(b: NbdBackend): NbdBackend {
  const h: NbdBackend = {
    size: b.size,
    readOnly: b.readOnly,
    canFlush: b.canFlush,
    canFua: b.canFua,
    canTrim: b.canTrim,
    canZero: b.canZero,
    canFastZero: b.canFastZero,
    canCache: b.canCache,
    canMultiConn: b.canMultiConn,
    metaContexts: () => b.metaContexts(),
    read: (o, l) => b.read(o, l),
    write: (o, d, opts) => b.write(o, d, opts),
    flush: () => b.flush(),
    trim: (o, l, opts) => b.trim(o, l, opts),
    zero: (o, l, opts) => b.zero(o, l, opts),
    cache: (o, l) => b.cache(o, l),
    blockStatus: (c, o, l) => b.blockStatus(c, o, l),
    close: async () => undefined,
  };
  const rs = b.readSparse?.bind(b);
  if (rs) h.readSparse = (o: number, l: number): Promise<ReadPiece[]> => rs(o, l);
  if (b.description !== undefined) Object.assign(h, { description: b.description });
  if (b.blockSize !== undefined) Object.assign(h, { blockSize: b.blockSize });
  return h;
}
