/**
 * Reusable payload buffers for WRITE requests.
 *
 * Large `Buffer.allocUnsafe` calls get fresh mmap'd memory that is page-faulted
 * on first touch and returned to the OS when collected; at GB/s the faults and
 * the GC churn cost more than the copy itself. The pool keeps power-of-two
 * buffers (64 KiB .. 32 MiB) on free lists, up to a retained-bytes cap.
 *
 * Contract: a buffer obtained from `get` is released at most once, after its
 * last use; backends never keep a reference to WRITE data after `write` resolves.
 */
const MIN_CLASS = 64 * 1024;

export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private retained = 0;

  constructor(private readonly maxRetainedBytes = 64 * 1024 * 1024) {}

  get(length: number): Buffer {
    if (length < MIN_CLASS) return Buffer.allocUnsafe(length);
    const cls = 2 ** Math.ceil(Math.log2(length));
    const list = this.free.get(cls);
    const ab = list?.pop();
    if (ab !== undefined) {
      this.retained -= cls;
      return Buffer.from(ab, 0, length);
    }
    return Buffer.from(Buffer.allocUnsafeSlow(cls).buffer, 0, length);
  }

  release(view: Buffer): void {
    const ab = view.buffer;
    const cls = ab.byteLength;
    if (view.byteOffset !== 0 || cls < MIN_CLASS || (cls & (cls - 1)) !== 0 || !(ab instanceof ArrayBuffer)) return;
    if (this.retained + cls > this.maxRetainedBytes) return;
    let list = this.free.get(cls);
    if (list === undefined) {
      list = [];
      this.free.set(cls, list);
    }
    list.push(ab);
    this.retained += cls;
  }
}
