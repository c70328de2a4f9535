/**
 * A read observer over any backend (nbdkit's filter model: every call goes to
 * `next`, reads are also reported). Used for progress of exports a client
 * reads at its own pace (`sanbox backup export` under qemu-img convert).
 *
 * Invariant: the wrapped backend behaves exactly as the original (same
 * capabilities, same answers, same errors); `onRead` sees each successful
 * read's range after it has been served, and a throwing observer cannot fail
 * the read.
 */
import type { NbdBackend, ReadPiece } from "../backend.js";

export function observeReads<T extends NbdBackend>(next: T, onRead: (offset: number, length: number) => void): T {
  const report = (offset: number, length: number): void => {
    try {
      onRead(offset, length);
    } catch {
      // Progress is best effort; it must not fail the I/O it watches.
    }
  };
  return new Proxy(next, {
    get(target, prop, receiver) {
      if (prop === "read") {
        return async (offset: number, length: number): Promise<Buffer> => {
          const data = await target.read(offset, length);
          report(offset, length);
          return data;
        };
      }
      if (prop === "readSparse" && target.readSparse !== undefined) {
        const readSparse = target.readSparse.bind(target);
        return async (offset: number, length: number): Promise<ReadPiece[]> => {
          const pieces = await readSparse(offset, length);
          report(offset, length);
          return pieces;
        };
      }
      const v: unknown = Reflect.get(target, prop, receiver);
      return typeof v === "function" ? (v as (...args: unknown[]) => unknown).bind(target) : v;
    },
  });
}
