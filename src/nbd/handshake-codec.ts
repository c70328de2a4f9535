/**
 * Pure codecs for the fixed-newstyle handshake (proto.md "Newstyle negotiation",
 * "Option types", "Option reply types"). No sockets here: every function maps
 * bytes ↔ values, and throws NbdProtocolError on malformed input.
 */
import { NbdProtocolError } from "../errors.js";
import {
  NBD_IHAVEOPT,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_MAGIC,
  NBD_MAX_STRING,
  NBD_REP_MAGIC,
} from "./constants.js";

export const GREETING_LENGTH = 18;
export const OPTION_HEADER_LENGTH = 16;
export const OPTION_REPLY_HEADER_LENGTH = 20;

export function encodeGreeting(handshakeFlags: number): Buffer {
  const b = Buffer.alloc(GREETING_LENGTH);
  b.writeBigUInt64BE(NBD_MAGIC, 0);
  b.writeBigUInt64BE(NBD_IHAVEOPT, 8);
  b.writeUInt16BE(handshakeFlags, 16);
  return b;
}

export function decodeGreeting(b: Buffer): { handshakeFlags: number } {
  if (b.length < GREETING_LENGTH) throw new NbdProtocolError("greeting too short");
  if (b.readBigUInt64BE(0) !== NBD_MAGIC) throw new NbdProtocolError("bad NBDMAGIC in greeting: not an NBD server");
  const second = b.readBigUInt64BE(8);
  if (second !== NBD_IHAVEOPT) {
    throw new NbdProtocolError(`server is not fixed-newstyle (magic 0x${second.toString(16)}); oldstyle servers are not supported`);
  }
  return { handshakeFlags: b.readUInt16BE(16) };
}

export function encodeClientFlags(flags: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(flags >>> 0, 0);
  return b;
}

export interface OptionHeader {
  option: number;
  length: number;
}

export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_HEADER_LENGTH + data.length);
  b.writeBigUInt64BE(NBD_IHAVEOPT, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(data.length, 12);
  data.copy(b, OPTION_HEADER_LENGTH);
  return b;
}

export function decodeOptionHeader(b: Buffer): OptionHeader {
  if (b.readBigUInt64BE(0) !== NBD_IHAVEOPT) throw new NbdProtocolError("bad IHAVEOPT magic in option request");
  return { option: b.readUInt32BE(8), length: b.readUInt32BE(12) };
}

export interface OptionReplyHeader {
  option: number;
  type: number;
  length: number;
}

export function encodeOptionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_REPLY_HEADER_LENGTH + data.length);
  b.writeBigUInt64BE(NBD_REP_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, OPTION_REPLY_HEADER_LENGTH);
  return b;
}

export function decodeOptionReplyHeader(b: Buffer): OptionReplyHeader {
  if (b.readBigUInt64BE(0) !== NBD_REP_MAGIC) throw new NbdProtocolError("bad option reply magic");
  return { option: b.readUInt32BE(8), type: b.readUInt32BE(12), length: b.readUInt32BE(16) };
}

// ---- strings -------------------------------------------------------------

function checkedString(b: Buffer, what: string): string {
  if (b.length > NBD_MAX_STRING) throw new NbdProtocolError(`${what} longer than ${NBD_MAX_STRING} bytes`);
  const s = b.toString("utf8");
  if (Buffer.byteLength(s) !== b.length || s.includes("\0")) throw new NbdProtocolError(`${what} is not valid UTF-8 without NUL`);
  return s;
}

/** A cursor over an option payload that turns every overrun into a protocol error. */
class Cursor {
  pos = 0;
  constructor(
    private readonly b: Buffer,
    private readonly what: string,
  ) {}
  need(n: number): void {
    if (this.pos + n > this.b.length) throw new NbdProtocolError(`${this.what}: payload truncated`);
  }
  u16(): number {
    this.need(2);
    const v = this.b.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.b.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.b.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  string32(label: string): string {
    const n = this.u32();
    if (n > NBD_MAX_STRING) throw new NbdProtocolError(`${this.what}: ${label} longer than ${NBD_MAX_STRING} bytes`);
    return checkedString(this.bytes(n), label);
  }
  rest(): Buffer {
    return this.bytes(this.b.length - this.pos);
  }
  end(): void {
    if (this.pos !== this.b.length) throw new NbdProtocolError(`${this.what}: ${this.b.length - this.pos} trailing bytes`);
  }
}

function str32(s: string): Buffer {
  const body = Buffer.from(s, "utf8");
  const b = Buffer.alloc(4 + body.length);
  b.writeUInt32BE(body.length, 0);
  body.copy(b, 4);
  return b;
}

// ---- NBD_OPT_INFO / NBD_OPT_GO ---------------------------------------------

export interface InfoRequest {
  name: string;
  infos: number[];
}

export function encodeInfoRequest(r: InfoRequest): Buffer {
  const tail = Buffer.alloc(2 + 2 * r.infos.length);
  tail.writeUInt16BE(r.infos.length, 0);
  r.infos.forEach((t, i) => tail.writeUInt16BE(t, 2 + 2 * i));
  return Buffer.concat([str32(r.name), tail]);
}

export function decodeInfoRequest(b: Buffer): InfoRequest {
  const c = new Cursor(b, "NBD_OPT_INFO/GO");
  const name = c.string32("export name");
  const n = c.u16();
  const infos: number[] = [];
  for (let i = 0; i < n; i++) infos.push(c.u16());
  c.end();
  return { name, infos };
}

export type InfoItem =
  | { type: typeof NBD_INFO_EXPORT; size: number; flags: number }
  | { type: typeof NBD_INFO_NAME; name: string }
  | { type: typeof NBD_INFO_DESCRIPTION; description: string }
  | { type: typeof NBD_INFO_BLOCK_SIZE; minimum: number; preferred: number; maximum: number }
  | { type: number; raw: Buffer };

export function encodeInfoItem(item: InfoItem): Buffer {
  if ("size" in item) {
    const b = Buffer.alloc(12);
    b.writeUInt16BE(NBD_INFO_EXPORT, 0);
    b.writeBigUInt64BE(BigInt(item.size), 2);
    b.writeUInt16BE(item.flags, 10);
    return b;
  }
  if ("name" in item) return Buffer.concat([u16(NBD_INFO_NAME), Buffer.from(item.name, "utf8")]);
  if ("description" in item) return Buffer.concat([u16(NBD_INFO_DESCRIPTION), Buffer.from(item.description, "utf8")]);
  if ("minimum" in item) {
    const b = Buffer.alloc(14);
    b.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
    b.writeUInt32BE(item.minimum, 2);
    b.writeUInt32BE(item.preferred, 6);
    b.writeUInt32BE(item.maximum, 10);
    return b;
  }
  return Buffer.concat([u16(item.type), item.raw]);
}

export function decodeInfoItem(b: Buffer): InfoItem {
  const c = new Cursor(b, "NBD_REP_INFO");
  const type = c.u16();
  switch (type) {
    case NBD_INFO_EXPORT: {
      const size = c.u64();
      const flags = c.u16();
      c.end();
      if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw new NbdProtocolError(`export size ${size} exceeds 2^53`);
      return { type, size: Number(size), flags };
    }
    case NBD_INFO_NAME:
      return { type, name: checkedString(c.rest(), "export name") };
    case NBD_INFO_DESCRIPTION:
      return { type, description: checkedString(c.rest(), "export description") };
    case NBD_INFO_BLOCK_SIZE: {
      const minimum = c.u32();
      const preferred = c.u32();
      const maximum = c.u32();
      c.end();
      return { type, minimum, preferred, maximum };
    }
    default:
      return { type, raw: c.rest() };
  }
}

function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v, 0);
  return b;
}

// ---- NBD_OPT_EXPORT_NAME (old-style export reply) -------------------------

export function encodeExportNameReply(size: number, flags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(flags, 8);
  return b;
}

export function decodeExportNameReply(b: Buffer): { size: number; flags: number } {
  const size = b.readBigUInt64BE(0);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw new NbdProtocolError(`export size ${size} exceeds 2^53`);
  return { size: Number(size), flags: b.readUInt16BE(8) };
}

// ---- NBD_OPT_LIST ----------------------------------------------------------

export function encodeServerReply(name: string, description?: string): Buffer {
  return Buffer.concat([str32(name), Buffer.from(description ?? "", "utf8")]);
}

export function decodeServerReply(b: Buffer): { name: string; description: string } {
  const c = new Cursor(b, "NBD_REP_SERVER");
  const name = c.string32("export name");
  return { name, description: checkedString(c.rest(), "export description") };
}

// ---- NBD_OPT_LIST_META_CONTEXT / SET_META_CONTEXT --------------------------

export interface MetaContextRequest {
  exportName: string;
  queries: string[];
}

export function encodeMetaContextRequest(r: MetaContextRequest): Buffer {
  const count = Buffer.alloc(4);
  count.writeUInt32BE(r.queries.length, 0);
  return Buffer.concat([str32(r.exportName), count, ...r.queries.map(str32)]);
}

export function decodeMetaContextRequest(b: Buffer): MetaContextRequest {
  const c = new Cursor(b, "NBD_OPT_*_META_CONTEXT");
  const exportName = c.string32("export name");
  const n = c.u32();
  if (n > 1024) throw new NbdProtocolError(`meta context request with ${n} queries`);
  const queries: string[] = [];
  for (let i = 0; i < n; i++) queries.push(c.string32("context query"));
  c.end();
  return { exportName, queries };
}

export function encodeMetaContextReply(id: number, name: string): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(id >>> 0, 0);
  return Buffer.concat([b, Buffer.from(name, "utf8")]);
}

export function decodeMetaContextReply(b: Buffer): { id: number; name: string } {
  const c = new Cursor(b, "NBD_REP_META_CONTEXT");
  const id = c.u32();
  return { id, name: checkedString(c.rest(), "context name") };
}
