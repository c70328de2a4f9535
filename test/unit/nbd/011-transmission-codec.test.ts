/**
 * Transmission codecs against golden bytes written by hand from proto.md
 * ("Request message", "Simple reply message", "Structured reply chunk message
 * types"), then round trips and malformed input.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NbdProtocolError } from "../../../src/errors.js";
import {
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_READ,
  NBD_CMD_WRITE_ZEROES,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
} from "../../../src/nbd/constants.js";
import {
  decodeBlockStatus,
  decodeErrorChunk,
  decodeOffsetData,
  decodeOffsetHole,
  decodeRequestHeader,
  encodeBlockStatus,
  encodeChunkHeader,
  encodeErrorChunk,
  encodeOffsetDataHead,
  encodeOffsetHole,
  encodeRequestHeader,
  encodeSimpleReply,
  type RequestHeader,
} from "../../../src/nbd/transmission-codec.js";

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ""), "hex");
}
const ascii = (s: string): string => Buffer.from(s, "utf8").toString("hex");

const COOKIE = 0x0102030405060708n;

describe("golden bytes", () => {
  it("request header: magic, flags, type, cookie, offset, length", () => {
    const h: RequestHeader = { flags: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE, type: NBD_CMD_WRITE_ZEROES, cookie: COOKIE, offset: 0x1_0000_1000, length: 0x10000 };
    const golden = hex("25609513 0003 0006 0102030405060708 0000000100001000 00010000");
    expect(encodeRequestHeader(h)).toEqual(golden);
    expect(decodeRequestHeader(golden)).toEqual(h);
  });

  it("request header written into a larger buffer at an offset", () => {
    const b = Buffer.alloc(32, 0xee);
    encodeRequestHeader({ flags: 0, type: NBD_CMD_READ, cookie: 1n, offset: 0, length: 512 }, b, 2);
    expect(b).toEqual(hex("eeee 25609513 0000 0000 0000000000000001 0000000000000000 00000200 eeee"));
  });

  it("simple reply: magic, error, cookie", () => {
    expect(encodeSimpleReply(0, COOKIE)).toEqual(hex("67446698 00000000 0102030405060708"));
    expect(encodeSimpleReply(28, 0xffffffffffffffffn)).toEqual(hex("67446698 0000001c ffffffffffffffff"));
  });

  it("structured chunk header: magic, flags, type, cookie, length", () => {
    expect(encodeChunkHeader({ flags: NBD_REPLY_FLAG_DONE, type: 0, cookie: COOKIE, length: 0 })).toEqual(
      hex("668e33ef 0001 0000 0102030405060708 00000000"),
    );
  });

  it("OFFSET_DATA head: chunk header (length = 8 + data) and the offset", () => {
    expect(encodeOffsetDataHead(0, COOKIE, 0x200, 0x1000)).toEqual(hex("668e33ef 0000 0001 0102030405060708 00001008 0000000000000200"));
  });

  it("OFFSET_HOLE: offset and hole size", () => {
    const golden = hex("668e33ef 0001 0002 0102030405060708 0000000c 0000000000010000 00020000");
    expect(encodeOffsetHole(NBD_REPLY_FLAG_DONE, COOKIE, 0x10000, 0x20000)).toEqual(golden);
    expect(decodeOffsetHole(golden.subarray(20))).toEqual({ offset: 0x10000, length: 0x20000 });
  });

  it("BLOCK_STATUS: context id, then (length, flags) descriptors", () => {
    const golden = hex("668e33ef 0001 0005 0102030405060708 00000014 00000001 00010000 00000000 00030000 00000003");
    const extents = [
      { length: 0x10000, flag: 0 },
      { length: 0x30000, flag: NBD_STATE_HOLE | NBD_STATE_ZERO },
    ];
    expect(encodeBlockStatus(NBD_REPLY_FLAG_DONE, COOKIE, 1, extents)).toEqual(golden);
    expect(decodeBlockStatus(golden.subarray(20))).toEqual({ contextId: 1, extents });
  });

  it("ERROR: errno, message length, message", () => {
    const golden = hex(`668e33ef 0001 8001 0102030405060708 00000009 00000016 0003 ${ascii("bad")}`);
    expect(encodeErrorChunk(NBD_REPLY_FLAG_DONE, COOKIE, 22, "bad")).toEqual(golden);
    expect(decodeErrorChunk(NBD_REPLY_TYPE_ERROR, golden.subarray(20))).toEqual({ error: 22, message: "bad" });
  });

  it("ERROR_OFFSET: errno, message length, message, offset", () => {
    const golden = hex(`668e33ef 0001 8002 0102030405060708 0000000e 00000005 0000 0000000000000400`);
    expect(encodeErrorChunk(NBD_REPLY_FLAG_DONE, COOKIE, 5, "", 0x400)).toEqual(golden);
    expect(decodeErrorChunk(NBD_REPLY_TYPE_ERROR_OFFSET, golden.subarray(20))).toEqual({ error: 5, message: "", offset: 0x400 });
  });

  it("an error message is capped at 4096 bytes", () => {
    const b = encodeErrorChunk(0, 1n, 5, "é".repeat(5000));
    expect(b.readUInt16BE(24)).toBeLessThanOrEqual(4096);
    expect(b.readUInt32BE(16)).toBe(b.length - 20);
  });
});

describe("round trips", () => {
  const header = fc.record({
    flags: fc.integer({ min: 0, max: 0xffff }),
    type: fc.integer({ min: 0, max: 0xffff }),
    cookie: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    offset: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
    length: fc.nat({ max: 0xffffffff }),
  });

  it("request headers", () => {
    fc.assert(
      fc.property(header, (h) => {
        expect(decodeRequestHeader(encodeRequestHeader(h))).toEqual(h);
      }),
    );
  });

  it("offsets above 2^53 decode to unsafe numbers (range checks reject them)", () => {
    const h = decodeRequestHeader(hex("25609513 0000 0000 0000000000000001 ffffffffffffffff 00000001"));
    expect(Number.isSafeInteger(h.offset)).toBe(false);
  });

  it("block status, hole, data and error chunks", () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 0xffffffff }),
        fc.array(fc.record({ length: fc.nat({ max: 0xffffffff }), flag: fc.nat({ max: 0xffffffff }) }), { minLength: 1, maxLength: 20 }),
        fc.nat({ max: Number.MAX_SAFE_INTEGER }),
        fc.nat({ max: 0xffffffff }),
        fc.string({ maxLength: 40 }),
        fc.uint8Array({ maxLength: 32 }),
        (ctx, extents, offset, len, msg, data) => {
          const bs = encodeBlockStatus(0, 7n, ctx, extents);
          expect(bs.readUInt32BE(16)).toBe(bs.length - 20);
          expect(decodeBlockStatus(bs.subarray(20))).toEqual({ contextId: ctx, extents });
          expect(decodeOffsetHole(encodeOffsetHole(0, 7n, offset, len).subarray(20))).toEqual({ offset, length: len });
          const head = encodeOffsetDataHead(0, 7n, offset, data.length);
          expect(decodeOffsetData(Buffer.concat([head.subarray(20), data]))).toEqual({ offset, data: Buffer.from(data) });
          expect(head.readUInt32BE(16)).toBe(8 + data.length);
          expect(decodeErrorChunk(NBD_REPLY_TYPE_ERROR, encodeErrorChunk(0, 7n, len, msg).subarray(20))).toEqual({ error: len, message: msg });
          expect(decodeErrorChunk(NBD_REPLY_TYPE_ERROR_OFFSET, encodeErrorChunk(0, 7n, len, msg, offset).subarray(20))).toEqual({
            error: len,
            message: msg,
            offset,
          });
        },
      ),
    );
  });
});

describe("malformed input throws NbdProtocolError", () => {
  const cases: [string, () => unknown][] = [
    ["request with a bad magic", () => decodeRequestHeader(hex("25609514 0000 0000 0000000000000001 0000000000000000 00000001"))],
    ["request with a simple-reply magic", () => decodeRequestHeader(hex("67446698 0000 0000 0000000000000001 0000000000000000 00000001"))],
    ["OFFSET_HOLE of 11 bytes", () => decodeOffsetHole(hex("0000000000000000 000001"))],
    ["OFFSET_HOLE of 13 bytes", () => decodeOffsetHole(hex("0000000000000000 00000100 00"))],
    ["OFFSET_DATA without an offset", () => decodeOffsetData(hex("00000000"))],
    ["BLOCK_STATUS without a descriptor", () => decodeBlockStatus(hex("00000001"))],
    ["BLOCK_STATUS with a partial descriptor", () => decodeBlockStatus(hex("00000001 00001000 00000000 0000"))],
    ["ERROR shorter than 6 bytes", () => decodeErrorChunk(NBD_REPLY_TYPE_ERROR, hex("00000005 00"))],
    ["ERROR whose message runs past the end", () => decodeErrorChunk(NBD_REPLY_TYPE_ERROR, hex("00000005 0005 6162"))],
    ["ERROR with trailing bytes", () => decodeErrorChunk(NBD_REPLY_TYPE_ERROR, hex("00000005 0000 00"))],
    ["ERROR_OFFSET without its offset", () => decodeErrorChunk(NBD_REPLY_TYPE_ERROR_OFFSET, hex("00000005 0000"))],
    ["unknown error chunk truncated", () => decodeErrorChunk(0x8005, hex("00000005 0004 61"))],
  ];
  it.each(cases)("%s", (_name, f) => {
    expect(f).toThrow(NbdProtocolError);
  });

  it("an unknown error type with extra payload still yields errno and message", () => {
    expect(decodeErrorChunk(0x8005, hex(`00000005 0002 ${ascii("hi")} ffff`))).toEqual({ error: 5, message: "hi" });
  });
});
