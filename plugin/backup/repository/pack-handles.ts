/**
 * Open read handles on pack files, kept between chunk reads. A restore or a
 * `backup serve` reads thousands of 64 KiB blobs from a few dozen packs;
 * opening and closing the pack per blob cost more than decompressing and
 * hashing it (1.2 s of 4.7 s restoring 512 MiB, measured in
 * docs/benchmarks.md).
 *
 * Invariants:
 *  - a handle is closed only when no read holds it: `use` counts readers and
 *    an evicted or forgotten handle closes when its last reader is done;
 *  - at most `limit` idle handles stay open (least recently used go first);
 *  - a pack still being appended to (`.partial`) is opened under that name;
 *    the handle stays valid across the rename that seals it (same inode);
 *  - `forget(id)` (a pack deleted by prune or repair) drops the handle, so a
 *    later read of that id opens the path again and sees that it is gone.
 */
import type { FileHandle } from "node:fs/promises";

interface Entry {
  readonly fh: Promise<FileHandle>;
  users: number;
  dropped: boolean;
}

export class PackHandles {
  private readonly open = new Map<string, Entry>();

  constructor(
    /** Opens the pack's file; rejects with the caller's error when it is missing. */
    private readonly opener: (id: string) => Promise<FileHandle>,
    private readonly limit = 32,
  ) {}

  /** Runs `fn` with an open handle on pack `id`. */
  async use<T>(id: string, fn: (fh: FileHandle) => Promise<T>): Promise<T> {
    let e = this.open.get(id);
    if (e === undefined) {
      e = { fh: this.opener(id), users: 0, dropped: false };
      this.open.set(id, e);
      e.fh.catch(() => {
        if (this.open.get(id) === e) this.open.delete(id);
      });
    } else {
      // Most recently used last: Map keeps insertion order.
      this.open.delete(id);
      this.open.set(id, e);
    }
    e.users++;
    try {
      return await fn(await e.fh);
    } finally {
      e.users--;
      if (e.dropped && e.users === 0) await closeQuietly(e.fh);
      this.trim();
    }
  }

  /** Closes the handle on `id` once idle; the next `use` opens the file again. */
  forget(id: string): void {
    const e = this.open.get(id);
    if (e === undefined) return;
    this.open.delete(id);
    this.drop(e);
  }

  async closeAll(): Promise<void> {
    const all = [...this.open.values()];
    this.open.clear();
    for (const e of all) e.dropped = true; // busy ones close when their last reader is done
    await Promise.all(all.filter((e) => e.users === 0).map((e) => closeQuietly(e.fh)));
  }

  private trim(): void {
    for (const [id, e] of this.open) {
      if (this.open.size <= this.limit) break;
      if (e.users > 0) continue;
      this.open.delete(id);
      this.drop(e);
    }
  }

  private drop(e: Entry): void {
    e.dropped = true;
    if (e.users === 0) void closeQuietly(e.fh);
  }
}

async function closeQuietly(fh: Promise<FileHandle>): Promise<void> {
  try {
    await (await fh).close();
  } catch {
    // A handle that failed to open, or is already closed: nothing to release.
  }
}
