/**
 * Pure codecs for the transmission phase (proto.md "Transmission", "Structured
 * reply chunk message types"). Requests are 28 bytes; simple replies 16; structured
 * chunk headers 20. Cookies are u64 and echoed verbatim, so they stay bigint.
 */
import { NbdProtocolError } from "../errors.js";
import type { Extent } from "../extents/extent.js";
import type { FlaggedExtent } from "../extents/flagged.js";
import {
  NBD_HEADER_REQUEST,
  NBD_HEADER_SIMPLE_REPLY,
  NBD_HEADER_STRUCTURED_REPLY,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
} from "./constants.js";

export interface RequestHeader {
  flags: number;
  type: number;
  cookie: bigint;
  /** Offsets above 2^53 decode to an unsafe number; range checks reject them. */
  offset: number;
  length: number;
}

export function encodeRequestHeader(r: RequestHeader, into?: Buffer, at = 0): Buffer {
  const b = into ?? Buffer.allocUnsafe(NBD_HEADER_REQUEST);
  b.writeUInt32BE(NBD_REQUEST_MAGIC, at);
  b.writeUInt16BE(r.flags, at + 4);
  b.writeUInt16BE(r.type, at + 6);
  b.writeBigUInt64BE(r.cookie, at + 8);
  b.writeBigUInt64BE(BigInt(r.offset), at + 16);
  b.writeUInt32BE(r.length >>> 0, at + 24);
  return b;
}

export function decodeRequestHeader(b: Buffer): RequestHeader {
  const magic = b.readUInt32BE(0);
  if (magic !== NBD_REQUEST_MAGIC) throw new NbdProtocolError(`bad request magic 0x${magic.toString(16)}`);
  const hi = b.readUInt32BE(16);
  const lo = b.readUInt32BE(20);
  return {
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    cookie: b.readBigUInt64BE(8),
    offset: hi * 0x1_0000_0000 + lo,
    length: b.readUInt32BE(24),
  };
}

export function encodeSimpleReply(error: number, cookie: bigint): Buffer {
  const b = Buffer.allocUnsafe(NBD_HEADER_SIMPLE_REPLY);
  b.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error >>> 0, 4);
  b.writeBigUInt64BE(cookie, 8);
  return b;
}

export interface ChunkHeader {
  flags: number;
  type: number;
  cookie: bigint;
  length: number;
}

export function encodeChunkHeader(h: ChunkHeader, extra = 0): Buffer {
  const b = Buffer.allocUnsafe(NBD_HEADER_STRUCTURED_REPLY + extra);
  b.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(h.flags, 4);
  b.writeUInt16BE(h.type, 6);
  b.writeBigUInt64BE(h.cookie, 8);
  b.writeUInt32BE(h.length >>> 0, 16);
  return b;
}

/** OFFSET_DATA header + offset; the data itself is written separately (zero-copy). */
export function encodeOffsetDataHead(flags: number, cookie: bigint, offset: number, dataLength: number): Buffer {
  const b = encodeChunkHeader({ flags, type: 1, cookie, length: 8 + dataLength }, 8);
  b.writeBigUInt64BE(BigInt(offset), NBD_HEADER_STRUCTURED_REPLY);
  return b;
}

export function encodeOffsetHole(flags: number, cookie: bigint, offset: number, length: number): Buffer {
  const b = encodeChunkHeader({ flags, type: NBD_REPLY_TYPE_OFFSET_HOLE, cookie, length: 12 }, 12);
  b.writeBigUInt64BE(BigInt(offset), 20);
  b.writeUInt32BE(length, 28);
  return b;
}

/**
 * A BLOCK_STATUS descriptor as the wire has it: a status extent without its
 * offset, which is implied (descriptors are contiguous from the request's
 * offset). The receiver adds offsets back (NbdClient.blockStatus).
 */
export type BlockDescriptor = Pick<FlaggedExtent<number>, "length" | "flag">;

export function encodeBlockStatus(flags: number, cookie: bigint, contextId: number, extents: readonly BlockDescriptor[]): Buffer {
  const payload = 4 + 8 * extents.length;
  const b = encodeChunkHeader({ flags, type: NBD_REPLY_TYPE_BLOCK_STATUS, cookie, length: payload }, payload);
  b.writeUInt32BE(contextId >>> 0, 20);
  let p = 24;
  for (const e of extents) {
    b.writeUInt32BE(e.length >>> 0, p);
    b.writeUInt32BE(e.flag >>> 0, p + 4);
    p += 8;
  }
  return b;
}

export function encodeErrorChunk(flags: number, cookie: bigint, error: number, message: string, offset?: number): Buffer {
  const msg = Buffer.from(message.slice(0, 1024), "utf8").subarray(0, 4096);
  const withOffset = offset !== undefined;
  const payload = 6 + msg.length + (withOffset ? 8 : 0);
  const type = withOffset ? NBD_REPLY_TYPE_ERROR_OFFSET : NBD_REPLY_TYPE_ERROR;
  const b = encodeChunkHeader({ flags, type, cookie, length: payload }, payload);
  b.writeUInt32BE(error >>> 0, 20);
  b.writeUInt16BE(msg.length, 24);
  msg.copy(b, 26);
  if (withOffset) b.writeBigUInt64BE(BigInt(offset), 26 + msg.length);
  return b;
}

// ---- client-side payload decoders -----------------------------------------

export function decodeOffsetHole(p: Buffer): Extent {
  if (p.length !== 12) throw new NbdProtocolError(`OFFSET_HOLE chunk of ${p.length} bytes, expected 12`);
  return { offset: Number(p.readBigUInt64BE(0)), length: p.readUInt32BE(8) };
}

export function decodeOffsetData(p: Buffer): { offset: number; data: Buffer } {
  if (p.length < 8) throw new NbdProtocolError(`OFFSET_DATA chunk of ${p.length} bytes`);
  return { offset: Number(p.readBigUInt64BE(0)), data: p.subarray(8) };
}

export function decodeBlockStatus(p: Buffer): { contextId: number; extents: BlockDescriptor[] } {
  if (p.length < 12 || (p.length - 4) % 8 !== 0) throw new NbdProtocolError(`BLOCK_STATUS chunk of ${p.length} bytes`);
  const contextId = p.readUInt32BE(0);
  const extents: BlockDescriptor[] = [];
  for (let at = 4; at < p.length; at += 8) extents.push({ length: p.readUInt32BE(at), flag: p.readUInt32BE(at + 4) });
  return { contextId, extents };
}

export function decodeErrorChunk(type: number, p: Buffer): { error: number; message: string; offset?: number } {
  if (p.length < 6) throw new NbdProtocolError(`error chunk of ${p.length} bytes`);
  const error = p.readUInt32BE(0);
  const mlen = p.readUInt16BE(4);
  const expected = 6 + mlen + (type === NBD_REPLY_TYPE_ERROR_OFFSET ? 8 : 0);
  if (type === NBD_REPLY_TYPE_ERROR || type === NBD_REPLY_TYPE_ERROR_OFFSET) {
    if (p.length !== expected) throw new NbdProtocolError(`error chunk length ${p.length}, expected ${expected}`);
  } else if (p.length < 6 + mlen) {
    throw new NbdProtocolError("unknown error chunk truncated");
  }
  const message = p.subarray(6, 6 + mlen).toString("utf8");
  if (type === NBD_REPLY_TYPE_ERROR_OFFSET) return { error, message, offset: Number(p.readBigUInt64BE(6 + mlen)) };
  return { error, message };
}
