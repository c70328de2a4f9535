/**
 * Read coalescing: turns many small source ranges into few bounded reads.
 *
 * A copy is a list of pieces, each "read `length` bytes at `srcOffset`" (where
 * the bytes go is the caller's business). Scattered change lists hold thousands
 * of small pieces a few KiB apart; one request per piece makes the copy cost
 * scale with the number of pieces rather than with the bytes. Coalescing
 * groups consecutive pieces into reads:
 *
 *   pieces   ██  ██ ██        ███████████████  ██
 *   reads    [---------]       [-------][----]  [-]     (gap ≤ maxGap, read ≤ maxRead)
 *
 * Invariants (test/unit/extents-coalesce.test.ts checks them against a model):
 *  - every piece lies whole inside exactly one read, which lists it with its
 *    position in the read (`at`); no piece is longer than maxRead (longer
 *    ones are split first, and the caller sees the split pieces);
 *  - a read is at most maxRead bytes, starts at its first piece and ends at
 *    the end of its last one, so the bytes read beyond the pieces are only the
 *    gaps inside it, each at most maxGap;
 *  - the order is kept: reads come out in the order of their pieces, and a
 *    piece joins the read before it only if it starts at or after that read's
 *    end (so no byte is read twice). Callers pass pieces in destination order
 *    (a revert plan is sorted by file offset, not LUN offset), and a sink such
 *    as the chunked image builder stays fast only when writes arrive in that
 *    order; sorting by source would scatter them;
 *  - one linear pass, O(n), no sorting.
 */

/** A source range to read; `T` carries whatever the caller needs per piece (its destination). */
export interface SourcePiece {
  readonly srcOffset: number;
  readonly length: number;
}

export interface CoalescedRead<T extends SourcePiece> {
  readonly offset: number;
  readonly length: number;
  /** The pieces this read serves, in the order given, with their byte position inside the read. */
  readonly pieces: readonly { readonly piece: T; readonly at: number }[];
}

export interface CoalesceLimits {
  /** Largest read, in bytes (> 0). */
  readonly maxRead: number;
  /** Largest gap between two pieces that one read may span (>= 0); a larger gap starts a new read. */
  readonly maxGap: number;
}

/**
 * Splits pieces longer than `maxRead` with `split(piece, skip, length)`, then
 * groups them into reads under `limits`. Zero-length pieces are dropped.
 */
export function coalesceReads<T extends SourcePiece>(pieces: readonly T[], limits: CoalesceLimits, split: (piece: T, skip: number, length: number) => T): CoalescedRead<T>[] {
  const maxRead = Math.max(1, Math.floor(limits.maxRead));
  const maxGap = Math.max(0, Math.floor(limits.maxGap));
  const bounded: T[] = [];
  for (const p of pieces) {
    if (p.length <= 0) continue;
    if (p.length <= maxRead) bounded.push(p);
    else for (let skip = 0; skip < p.length; skip += maxRead) bounded.push(split(p, skip, Math.min(maxRead, p.length - skip)));
  }
  const out: CoalescedRead<T>[] = [];
  let start = 0;
  let stop = 0;
  let group: { piece: T; at: number }[] = [];
  for (const p of bounded) {
    const pEnd = p.srcOffset + p.length;
    const joinable = group.length > 0 && p.srcOffset >= stop && p.srcOffset - stop <= maxGap && pEnd - start <= maxRead;
    if (!joinable) {
      if (group.length > 0) out.push({ offset: start, length: stop - start, pieces: group });
      start = p.srcOffset;
      stop = pEnd;
      group = [{ piece: p, at: 0 }];
      continue;
    }
    group.push({ piece: p, at: p.srcOffset - start });
    stop = pEnd;
  }
  if (group.length > 0) out.push({ offset: start, length: stop - start, pieces: group });
  return out;
}

