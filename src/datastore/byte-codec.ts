/**
 * Bounds-checked little-endian reader and growable writer for the datastore's
 * binary metadata. Every read past the end, or any u64 above 2^53, is a
 * CorruptError naming the structure being decoded.
 */
import { CorruptError } from "../errors.js";

export class ByteReader {
  private pos = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}
  get offset(): number {
    return this.pos;
  }
  get remaining(): number {
    return this.buf.length - this.pos;
  }
  private need(n: number): number {
    if (this.pos + n > this.buf.length) throw new CorruptError(`${this.what}: truncated at byte ${this.pos} (need ${n} more)`);
    const at = this.pos;
    this.pos += n;
    return at;
  }
  u8(): number {
    return this.buf.readUInt8(this.need(1));
  }
  u16(): number {
    return this.buf.readUInt16LE(this.need(2));
  }
  u32(): number {
    return this.buf.readUInt32LE(this.need(4));
  }
  u64(): number {
    const at = this.need(8);
    const v = this.buf.readBigUInt64LE(at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new CorruptError(`${this.what}: value at byte ${at} exceeds 2^53`);
    return Number(v);
  }
  bytes(n: number): Buffer {
    const at = this.need(n);
    return this.buf.subarray(at, at + n);
  }
  skip(n: number): void {
    this.need(n);
  }
}

export class ByteWriter {
  private buf = Buffer.alloc(256);
  private pos = 0;
  private ensure(n: number): number {
    if (this.pos + n > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, this.pos + n));
      this.buf.copy(next, 0, 0, this.pos);
      this.buf = next;
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }
  get length(): number {
    return this.pos;
  }
  u8(v: number): this {
    const at = this.ensure(1);
    this.buf.writeUInt8(v, at);
    return this;
  }
  u16(v: number): this {
    const at = this.ensure(2);
    this.buf.writeUInt16LE(v, at);
    return this;
  }
  u32(v: number): this {
    const at = this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, at);
    return this;
  }
  u64(v: number): this {
    const at = this.ensure(8);
    this.buf.writeBigUInt64LE(BigInt(v), at);
    return this;
  }
  bytes(b: Uint8Array): this {
    const at = this.ensure(b.length);
    this.buf.set(b, at);
    return this;
  }
  zeros(n: number): this {
    this.ensure(n);
    return this;
  }
  /** Patches a u32 already written at `at`. */
  setU32(at: number, v: number): void {
    this.buf.writeUInt32LE(v >>> 0, at);
  }
  finish(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }
}
