/**
 * A FIFO of received Buffers that frame decoders consume without copying when a
 * frame sits inside one chunk. Used for framing small things (the server's option
 * and request headers, the client handshake's replies); payloads are copied once,
 * straight to their destination, by the decoders themselves.
 *
 * Invariant: `length` is the sum of the unconsumed bytes of `chunks`; `head` is the
 * consumed prefix of chunks[0].
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0;
  private total = 0;

  get length(): number {
    return this.total;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** Remove and return exactly n bytes (n <= length). Zero-copy if contiguous. */
  take(n: number): Buffer {
    if (n > this.total) throw new RangeError(`ByteQueue.take(${n}) with only ${this.total} buffered`);
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    if (first !== undefined && first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      if (c === undefined) break;
      const avail = c.length - this.head;
      const want = Math.min(avail, n - filled);
      c.copy(out, filled, this.head, this.head + want);
      filled += want;
      this.advance(want);
    }
    return out;
  }

  /** Discard up to n bytes; returns how many were discarded. */
  skip(n: number): number {
    let left = Math.min(n, this.total);
    const done = left;
    while (left > 0) {
      const c = this.chunks[0];
      if (c === undefined) break;
      const step = Math.min(c.length - this.head, left);
      this.advance(step);
      left -= step;
    }
    return done;
  }

  /** Copy of the first n bytes without consuming them (n <= length, small n only). */
  peek(n: number): Buffer {
    const first = this.chunks[0];
    if (first !== undefined && first.length - this.head >= n) return first.subarray(this.head, this.head + n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let i = 0;
    let pos = this.head;
    while (filled < n) {
      const c = this.chunks[i];
      if (c === undefined) throw new RangeError(`ByteQueue.peek(${n}) with only ${this.total} buffered`);
      const want = Math.min(c.length - pos, n - filled);
      c.copy(out, filled, pos, pos + want);
      filled += want;
      i++;
      pos = 0;
    }
    return out;
  }

  /** Everything buffered, consumed. */
  drain(): Buffer {
    return this.take(this.total);
  }

  private advance(n: number): void {
    this.head += n;
    this.total -= n;
    const c = this.chunks[0];
    if (c !== undefined && this.head >= c.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
