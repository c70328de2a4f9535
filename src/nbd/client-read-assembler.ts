/**
 * Reassembles one READ from structured reply chunks (proto.md "Structured reply
 * chunk message types"): OFFSET_DATA and OFFSET_HOLE chunks may arrive in any order
 * and must together cover [offset, offset+length) exactly once, unless an error
 * chunk was sent. A hole is zeroes. Pure: no sockets, so it is tested directly.
 *
 * Coverage is kept as a sorted list of disjoint [start, end) intervals (relative
 * to the request), merging neighbours, so the common case (one or a few chunks in
 * order) stays a single interval.
 */
import { NbdProtocolError } from "../errors.js";

export class ReadAssembler {
  readonly buffer: Buffer;
  private readonly covered: [number, number][] = [];
  private chunks = 0;

  constructor(
    readonly offset: number,
    readonly length: number,
    private readonly df = false,
  ) {
    this.buffer = Buffer.alloc(length);
  }

  data(absOffset: number, data: Buffer): void {
    this.claim(absOffset, data.length, "OFFSET_DATA");
    data.copy(this.buffer, absOffset - this.offset);
  }

  /** The buffer is zero-filled already. */
  hole(absOffset: number, length: number): void {
    this.claim(absOffset, length, "OFFSET_HOLE");
  }

  /** Throws if the chunks did not cover the whole request. */
  finish(): Buffer {
    const first = this.covered[0];
    if (this.length > 0 && (this.covered.length !== 1 || first === undefined || first[0] !== 0 || first[1] !== this.length)) {
      const gap = this.firstGap();
      throw new NbdProtocolError(`READ reply for [${this.offset}, +${this.length}) left bytes [${this.offset + gap}, …) uncovered`);
    }
    return this.buffer;
  }

  private firstGap(): number {
    let at = 0;
    for (const [s, e] of this.covered) {
      if (s > at) return at;
      at = e;
    }
    return at;
  }

  private claim(absOffset: number, len: number, what: string): void {
    if (len === 0) throw new NbdProtocolError(`zero-length ${what} chunk`);
    const s = absOffset - this.offset;
    const e = s + len;
    if (s < 0 || e > this.length) {
      throw new NbdProtocolError(`${what} chunk [${absOffset}, +${len}) lies outside the READ request [${this.offset}, +${this.length})`);
    }
    this.chunks++;
    if (this.df && this.chunks > 1) throw new NbdProtocolError("server split a READ sent with NBD_CMD_FLAG_DF");
    // Find the insertion point; reject any overlap; merge touching neighbours.
    const iv = this.covered;
    let i = 0;
    while (i < iv.length && (iv[i]?.[1] ?? 0) <= s) i++;
    const next = iv[i];
    if (next !== undefined && next[0] < e) {
      throw new NbdProtocolError(`${what} chunk [${absOffset}, +${len}) overlaps data already received`);
    }
    const prev = iv[i - 1];
    if (prev !== undefined && prev[1] === s) {
      prev[1] = e;
      if (next !== undefined && next[0] === e) {
        prev[1] = next[1];
        iv.splice(i, 1);
      }
    } else if (next !== undefined && next[0] === e) {
      next[0] = s;
    } else {
      iv.splice(i, 0, [s, e]);
    }
  }
}
