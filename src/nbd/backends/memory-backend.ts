/**
 * Sparse in-memory disk (nbdkit's memory plugin): 64 KiB pages allocated on first
 * write. A missing page is a hole that reads as zeros.
 *
 * Invariants: a page is either absent (hole, zeros) or a full PAGE-sized buffer;
 * pages come from 16 MiB slabs and freed pages are recycled, never returned;
 * trim and zero-with-mayTrim free whole pages and zero partial ones; block
 * status reports absent pages as HOLE|ZERO and present ones as data. All
 * operations complete synchronously, so every write is immediately visible to
 * every connection: multi-conn is safe and FLUSH is a no-op.
 *
 * It is also the block device of tests and of the crash tests' write log (a
 * datastore or an oracle image in memory): `fromBuffer` makes one from an
 * image, `contents` copies the image out. Called directly, I/O is range- and
 * read-only-checked (src/block-device.ts); the server has checked already.
 */
import { checkDeviceRange, checkDeviceWrite } from "../../block-device.js";
import type { NbdBackend, ReadPiece, StatusExtent } from "../backend.js";
import { NBD_META_BASE_ALLOCATION, NBD_STATE_HOLE, NBD_STATE_ZERO } from "../constants.js";
import { InvalidArgumentError, UnsupportedError } from "../../errors.js";

const PAGE = 64 * 1024;
const SLAB_PAGES = 256; // 16 MiB slabs: one allocation instead of 256 page faults-and-frees
const ZERO_PAGE = Buffer.alloc(PAGE);

/**
 * Pages carved from slabs, recycled through a free list (freed pages are dirty).
 * Reads alias page memory until the server has sent them, so a freed page is
 * quarantined while any aliasing read is outstanding; it can never be recycled
 * for another offset under a reply that is still queued on a socket.
 */
class PageAllocator {
  private readonly freePages: Buffer[] = [];
  private quarantine: Buffer[] = [];
  private readers = 0;
  alloc(zero: boolean): Buffer {
    const p = this.freePages.pop();
    if (p !== undefined) {
      if (zero) p.fill(0);
      return p;
    }
    const slab = Buffer.alloc(PAGE * SLAB_PAGES);
    for (let i = 1; i < SLAB_PAGES; i++) this.freePages.push(slab.subarray(i * PAGE, (i + 1) * PAGE));
    return slab.subarray(0, PAGE);
  }
  release(p: Buffer): void {
    if (this.readers > 0) this.quarantine.push(p);
    else this.freePages.push(p);
  }
  /** A read that aliases pages starts; the returned function ends it (once). */
  beginRead(): () => void {
    this.readers++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.readers === 0 && this.quarantine.length > 0) {
        for (const p of this.quarantine) this.freePages.push(p);
        this.quarantine = [];
      }
    };
  }
}

export class MemoryBackend implements NbdBackend {
  readonly readOnly: boolean;
  readonly canFlush = true;
  readonly canFua = true;
  readonly canTrim = true;
  readonly canZero = true;
  readonly canFastZero = true;
  readonly canCache = true;
  readonly canMultiConn = true;
  readonly description: string;
  private readonly pages = new Map<number, Buffer>();
  private readonly allocator = new PageAllocator();

  constructor(
    readonly size: number,
    opts: { readOnly?: boolean; description?: string } = {},
  ) {
    if (!Number.isSafeInteger(size) || size < 0) throw new InvalidArgumentError(`invalid memory disk size ${size}`);
    this.readOnly = opts.readOnly ?? false;
    this.description = opts.description ?? `sparse memory disk of ${size} bytes`;
  }

  /** A disk holding a copy of `image` (its size is the image's); all-zero pages stay holes. */
  static fromBuffer(image: Buffer, opts: { readOnly?: boolean; description?: string } = {}): MemoryBackend {
    const disk = new MemoryBackend(image.length, opts);
    for (let at = 0; at < image.length; at += PAGE) {
      const chunk = image.subarray(at, Math.min(at + PAGE, image.length));
      if (!chunk.equals(ZERO_PAGE.subarray(0, chunk.length))) disk.store(at, chunk);
    }
    return disk;
  }

  /** A copy of the whole disk, holes as zeros (what tests used to read a memory device's buffer for). */
  contents(): Buffer {
    const out = Buffer.alloc(this.size);
    for (const [idx, page] of this.pages) page.copy(out, idx * PAGE, 0, Math.min(PAGE, this.size - idx * PAGE));
    return out;
  }

  /** Bytes of allocated pages. */
  get allocatedBytes(): number {
    return this.pages.size * PAGE;
  }

  metaContexts(): readonly string[] {
    return [NBD_META_BASE_ALLOCATION];
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkDeviceRange("read", offset, length, this.size);
    const pieces = this.readPieces(offset, length);
    if (pieces.length === 1 && pieces[0] !== undefined && "data" in pieces[0]) return Buffer.from(pieces[0].data);
    const out = Buffer.alloc(length);
    for (const p of pieces) if ("data" in p) p.data.copy(out, p.offset - offset);
    return out;
  }

  async readSparse(offset: number, length: number): Promise<ReadPiece[]> {
    // Zero-copy: pieces alias page memory. A write landing before the reply leaves
    // the socket was issued concurrently with this read (the client has not seen
    // the reply), where the spec allows either content; and freed pages stay
    // quarantined until the reply is sent (PageAllocator.beginRead).
    checkDeviceRange("read", offset, length, this.size);
    const pieces = this.readPieces(offset, length);
    const end = this.allocator.beginRead();
    let last = -1;
    pieces.forEach((p, i) => {
      if ("data" in p) last = i;
    });
    const tail = pieces[last];
    if (tail === undefined || !("data" in tail)) end();
    else tail.release = end;
    return pieces;
  }

  /** Pieces aliasing page memory, adjacent holes merged. */
  private readPieces(offset: number, length: number): ReadPiece[] {
    const out: ReadPiece[] = [];
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const idx = Math.floor(pos / PAGE);
      const within = pos - idx * PAGE;
      const n = Math.min(PAGE - within, end - pos);
      const page = this.pages.get(idx);
      const last = out[out.length - 1];
      if (page === undefined) {
        if (last !== undefined && "hole" in last) last.hole += n;
        else out.push({ offset: pos, hole: n });
      } else {
        out.push({ offset: pos, data: page.subarray(within, within + n) });
      }
      pos += n;
    }
    return out;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    checkDeviceWrite("write", offset, data.length, this);
    this.store(offset, data);
  }

  /** Copies `data` into the pages at `offset`, allocating the pages it lands on. */
  private store(offset: number, data: Buffer): void {
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const idx = Math.floor(pos / PAGE);
      const within = pos - idx * PAGE;
      const n = Math.min(PAGE - within, data.length - done);
      let page = this.pages.get(idx);
      if (page === undefined) {
        page = this.allocator.alloc(n !== PAGE);
        this.pages.set(idx, page);
      }
      data.copy(page, within, done, done + n);
      done += n;
    }
  }

  async flush(): Promise<void> {}

  async trim(offset: number, length: number): Promise<void> {
    checkDeviceWrite("trim", offset, length, this);
    this.clear(offset, length, true);
  }

  async zero(offset: number, length: number, opts: { mayTrim: boolean; fastZero: boolean }): Promise<void> {
    void opts.fastZero; // zeroing memory is always fast
    checkDeviceWrite("zero", offset, length, this);
    this.clear(offset, length, opts.mayTrim);
  }

  private clear(offset: number, length: number, mayFree: boolean): void {
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const idx = Math.floor(pos / PAGE);
      const within = pos - idx * PAGE;
      const n = Math.min(PAGE - within, end - pos);
      const page = this.pages.get(idx);
      if (page !== undefined) {
        if (n === PAGE && mayFree) {
          this.pages.delete(idx);
          this.allocator.release(page);
        } else {
          page.fill(0, within, within + n);
        }
      } else if (!mayFree) {
        this.pages.set(idx, this.allocator.alloc(true)); // NO_HOLE: allocate
      }
      pos += n;
    }
  }

  async cache(): Promise<void> {}

  async blockStatus(context: string, offset: number, length: number): Promise<StatusExtent[]> {
    if (context !== NBD_META_BASE_ALLOCATION) throw new UnsupportedError(`context ${context} not served`);
    const out: StatusExtent[] = [];
    let pos = offset;
    const end = Math.min(offset + length, this.size);
    while (pos < end) {
      const idx = Math.floor(pos / PAGE);
      const n = Math.min((idx + 1) * PAGE, end) - pos;
      const flag = this.pages.has(idx) ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO;
      const last = out[out.length - 1];
      if (last !== undefined && last.flag === flag) out[out.length - 1] = { offset: last.offset, length: last.length + n, flag };
      else out.push({ offset: pos, length: n, flag });
      pos += n;
    }
    return out;
  }
}
