/**
 * Handshake codecs against golden bytes written by hand from proto.md
 * ("Newstyle negotiation", "Option types", "Option reply types"), then
 * round trips over random values, then malformed input.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NbdProtocolError } from "../../../src/errors.js";
import {
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_OPT_GO,
  NBD_OPT_LIST,
  NBD_OPT_SET_META_CONTEXT,
  NBD_REP_ACK,
  NBD_REP_ERR_UNSUP,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
} from "../../../src/nbd/constants.js";
import {
  decodeExportNameReply,
  decodeGreeting,
  decodeInfoItem,
  decodeInfoRequest,
  decodeMetaContextReply,
  decodeMetaContextRequest,
  decodeOptionHeader,
  decodeOptionReplyHeader,
  decodeServerReply,
  encodeClientFlags,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoItem,
  encodeInfoRequest,
  encodeMetaContextReply,
  encodeMetaContextRequest,
  encodeOption,
  encodeOptionReply,
  encodeServerReply,
  type InfoItem,
} from "../../../src/nbd/handshake-codec.js";

/** Golden bytes are written as spaced hex; `hex("4e42 444d")` → Buffer. */
function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ""), "hex");
}
const ascii = (s: string): string => Buffer.from(s, "utf8").toString("hex");

/** A string the wire accepts: UTF-8, no NUL, at most 4096 bytes. */
const wireString = fc.string({ unit: "grapheme", maxLength: 64 }).filter((s) => !s.includes("\0"));

describe("golden bytes", () => {
  it("greeting: NBDMAGIC, IHAVEOPT, handshake flags", () => {
    expect(encodeGreeting(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)).toEqual(hex("4e42444d41474943 49484156454f5054 0003"));
    expect(decodeGreeting(hex("4e42444d41474943 49484156454f5054 0001"))).toEqual({ handshakeFlags: 1 });
  });

  it("client flags: 32-bit big-endian", () => {
    expect(encodeClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)).toEqual(hex("00000003"));
    expect(encodeClientFlags(0x80000000)).toEqual(hex("80000000"));
  });

  it("option request: IHAVEOPT, option, length, data", () => {
    expect(encodeOption(NBD_OPT_LIST)).toEqual(hex("49484156454f5054 00000003 00000000"));
    expect(encodeOption(NBD_OPT_GO, hex("aabb"))).toEqual(hex("49484156454f5054 00000007 00000002 aabb"));
    expect(decodeOptionHeader(hex("49484156454f5054 00000007 00000010"))).toEqual({ option: 7, length: 16 });
  });

  it("option reply: reply magic, option, type, length, data", () => {
    expect(encodeOptionReply(NBD_OPT_GO, NBD_REP_ACK)).toEqual(hex("0003e889045565a9 00000007 00000001 00000000"));
    expect(encodeOptionReply(99, NBD_REP_ERR_UNSUP, Buffer.from("no"))).toEqual(
      hex(`0003e889045565a9 00000063 80000001 00000002 ${ascii("no")}`),
    );
    expect(decodeOptionReplyHeader(hex("0003e889045565a9 00000009 00000004 0000000c"))).toEqual({ option: 9, type: 4, length: 12 });
  });

  it("NBD_OPT_GO request: name, then info request list", () => {
    const b = encodeInfoRequest({ name: "disk", infos: [NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE] });
    expect(b).toEqual(hex(`00000004 ${ascii("disk")} 0002 0001 0003`));
    expect(encodeInfoRequest({ name: "", infos: [] })).toEqual(hex("00000000 0000"));
  });

  it("NBD_INFO_EXPORT: type 0, u64 size, u16 flags", () => {
    const item: InfoItem = { type: NBD_INFO_EXPORT, size: 0x1_0000_0200, flags: 0x0d6d };
    expect(encodeInfoItem(item)).toEqual(hex("0000 0000000100000200 0d6d"));
    expect(decodeInfoItem(hex("0000 0000000100000200 0d6d"))).toEqual(item);
  });

  it("NBD_INFO_NAME and NBD_INFO_DESCRIPTION: type, then the bytes (no length)", () => {
    expect(encodeInfoItem({ type: NBD_INFO_NAME, name: "lun/a" })).toEqual(hex(`0001 ${ascii("lun/a")}`));
    expect(encodeInfoItem({ type: NBD_INFO_DESCRIPTION, description: "ok" })).toEqual(hex(`0002 ${ascii("ok")}`));
    expect(decodeInfoItem(hex(`0001 ${ascii("x")}`))).toEqual({ type: NBD_INFO_NAME, name: "x" });
  });

  it("NBD_INFO_BLOCK_SIZE: type 3, minimum, preferred, maximum", () => {
    const item: InfoItem = { type: NBD_INFO_BLOCK_SIZE, minimum: 1, preferred: 4096, maximum: 32 * 1024 * 1024 };
    expect(encodeInfoItem(item)).toEqual(hex("0003 00000001 00001000 02000000"));
    expect(decodeInfoItem(hex("0003 00000001 00001000 02000000"))).toEqual(item);
  });

  it("unknown info items survive as raw bytes", () => {
    expect(decodeInfoItem(hex("0009 abcd"))).toEqual({ type: 9, raw: hex("abcd") });
    expect(encodeInfoItem({ type: 9, raw: hex("abcd") })).toEqual(hex("0009 abcd"));
  });

  it("NBD_REP_SERVER: u32 name length, name, description", () => {
    expect(encodeServerReply("a", "bc")).toEqual(hex(`00000001 ${ascii("a")} ${ascii("bc")}`));
    expect(encodeServerReply("")).toEqual(hex("00000000"));
    expect(decodeServerReply(hex(`00000001 ${ascii("a")} ${ascii("bc")}`))).toEqual({ name: "a", description: "bc" });
  });

  it("META_CONTEXT request: export name, query count, length-prefixed queries", () => {
    const b = encodeMetaContextRequest({ exportName: "e", queries: ["base:allocation", "qemu:"] });
    expect(b).toEqual(hex(`00000001 ${ascii("e")} 00000002 0000000f ${ascii("base:allocation")} 00000005 ${ascii("qemu:")}`));
    expect(encodeOption(NBD_OPT_SET_META_CONTEXT, encodeMetaContextRequest({ exportName: "", queries: [] }))).toEqual(
      hex("49484156454f5054 0000000a 00000008 00000000 00000000"),
    );
  });

  it("META_CONTEXT reply: u32 context id, then the name", () => {
    expect(encodeMetaContextReply(1, "base:allocation")).toEqual(hex(`00000001 ${ascii("base:allocation")}`));
    expect(encodeOptionReply(NBD_OPT_SET_META_CONTEXT, NBD_REP_META_CONTEXT, encodeMetaContextReply(2, "a:b"))).toEqual(
      hex(`0003e889045565a9 0000000a 00000004 00000007 00000002 ${ascii("a:b")}`),
    );
    expect(decodeMetaContextReply(hex(`00000002 ${ascii("a:b")}`))).toEqual({ id: 2, name: "a:b" });
  });

  it("EXPORT_NAME reply: size, flags, then 124 zero bytes unless NO_ZEROES", () => {
    const withZeroes = encodeExportNameReply(1024 * 1024, 0x0003, false);
    expect(withZeroes).toHaveLength(134);
    expect(withZeroes).toEqual(Buffer.concat([hex("0000000000100000 0003"), Buffer.alloc(124)]));
    expect(encodeExportNameReply(1024 * 1024, 0x0003, true)).toEqual(hex("0000000000100000 0003"));
    expect(decodeExportNameReply(withZeroes)).toEqual({ size: 1024 * 1024, flags: 3 });
  });

  it("NBD_REP_SERVER reply inside an option reply frame", () => {
    expect(encodeOptionReply(NBD_OPT_LIST, NBD_REP_SERVER, encodeServerReply("d"))).toEqual(
      hex(`0003e889045565a9 00000003 00000002 00000005 00000001 ${ascii("d")}`),
    );
  });
});

describe("round trips", () => {
  it("greeting flags", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffff }), (f) => decodeGreeting(encodeGreeting(f)).handshakeFlags === f));
  });

  it("option headers and option reply headers", () => {
    fc.assert(
      fc.property(fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff }), fc.uint8Array({ maxLength: 64 }), (opt, type, data) => {
        const d = Buffer.from(data);
        const o = encodeOption(opt, d);
        expect(decodeOptionHeader(o)).toEqual({ option: opt, length: d.length });
        expect(o.subarray(16)).toEqual(d);
        const r = encodeOptionReply(opt, type, d);
        expect(decodeOptionReplyHeader(r)).toEqual({ option: opt, type, length: d.length });
        expect(r.subarray(20)).toEqual(d);
      }),
    );
  });

  it("info requests", () => {
    fc.assert(
      fc.property(wireString, fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 8 }), (name, infos) => {
        expect(decodeInfoRequest(encodeInfoRequest({ name, infos }))).toEqual({ name, infos });
      }),
    );
  });

  it("info items", () => {
    const item: fc.Arbitrary<InfoItem> = fc.oneof(
      fc.record({ type: fc.constant(NBD_INFO_EXPORT), size: fc.nat({ max: Number.MAX_SAFE_INTEGER }), flags: fc.integer({ min: 0, max: 0xffff }) }),
      fc.record({ type: fc.constant(NBD_INFO_NAME), name: wireString }),
      fc.record({ type: fc.constant(NBD_INFO_DESCRIPTION), description: wireString }),
      fc.record({
        type: fc.constant(NBD_INFO_BLOCK_SIZE),
        minimum: fc.nat({ max: 0xffffffff }),
        preferred: fc.nat({ max: 0xffffffff }),
        maximum: fc.nat({ max: 0xffffffff }),
      }),
    );
    fc.assert(
      fc.property(item, (i) => {
        expect(decodeInfoItem(encodeInfoItem(i))).toEqual(i);
      }),
    );
  });

  it("meta context requests and replies", () => {
    fc.assert(
      fc.property(wireString, fc.array(wireString, { maxLength: 6 }), fc.nat({ max: 0xffffffff }), (exportName, queries, id) => {
        expect(decodeMetaContextRequest(encodeMetaContextRequest({ exportName, queries }))).toEqual({ exportName, queries });
        const name = queries[0] ?? "base:allocation";
        expect(decodeMetaContextReply(encodeMetaContextReply(id, name))).toEqual({ id, name });
      }),
    );
  });

  it("server replies and export-name replies", () => {
    fc.assert(
      fc.property(wireString, wireString, fc.nat({ max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 0, max: 0xffff }), fc.boolean(), (n, d, size, flags, nz) => {
        expect(decodeServerReply(encodeServerReply(n, d))).toEqual({ name: n, description: d });
        expect(decodeExportNameReply(encodeExportNameReply(size, flags, nz))).toEqual({ size, flags });
      }),
    );
  });
});

describe("malformed input throws NbdProtocolError", () => {
  const cases: [string, () => unknown][] = [
    ["short greeting", () => decodeGreeting(hex("4e42444d41474943"))],
    ["greeting without NBDMAGIC", () => decodeGreeting(hex("0000000000000000 49484156454f5054 0003"))],
    ["oldstyle greeting", () => decodeGreeting(hex("4e42444d41474943 0000420281861253 0003"))],
    ["option without IHAVEOPT", () => decodeOptionHeader(hex("49484156454f5055 00000007 00000000"))],
    ["option reply with bad magic", () => decodeOptionReplyHeader(hex("0003e889045565aa 00000007 00000001 00000000"))],
    ["GO name length past the end", () => decodeInfoRequest(hex("00000010 6162 0000"))],
    ["GO info count past the end", () => decodeInfoRequest(hex("00000000 0002 0001"))],
    ["GO with trailing bytes", () => decodeInfoRequest(hex("00000000 0000 ff"))],
    ["GO name longer than 4096", () => decodeInfoRequest(Buffer.concat([hex("00001001"), Buffer.alloc(4097, 0x61), hex("0000")]))],
    ["GO name with a NUL", () => decodeInfoRequest(hex("00000002 6100 0000"))],
    ["GO name not UTF-8", () => decodeInfoRequest(hex("00000002 c328 0000"))],
    ["INFO_EXPORT truncated", () => decodeInfoItem(hex("0000 00000000000010"))],
    ["INFO_EXPORT with trailing bytes", () => decodeInfoItem(hex("0000 0000000000001000 0001 00"))],
    ["INFO_EXPORT size above 2^53", () => decodeInfoItem(hex("0000 0020000000000001 0001"))],
    ["INFO_BLOCK_SIZE truncated", () => decodeInfoItem(hex("0003 00000001 00001000"))],
    ["info item without a type", () => decodeInfoItem(hex("00"))],
    ["REP_SERVER name past the end", () => decodeServerReply(hex("00000005 6162"))],
    ["META_CONTEXT request truncated", () => decodeMetaContextRequest(hex("00000000 00000001 00000005 6162"))],
    ["META_CONTEXT request with trailing bytes", () => decodeMetaContextRequest(hex("00000000 00000000 00"))],
    ["META_CONTEXT request with 2^32-1 queries", () => decodeMetaContextRequest(hex("00000000 ffffffff"))],
    ["META_CONTEXT reply without an id", () => decodeMetaContextReply(hex("0000"))],
    ["EXPORT_NAME reply size above 2^53", () => decodeExportNameReply(hex("ffffffffffffffff 0001"))],
  ];
  it.each(cases)("%s", (_name, f) => {
    expect(f).toThrow(NbdProtocolError);
  });

  it("never throws anything but NbdProtocolError on random option payloads", () => {
    const decoders = [decodeInfoRequest, decodeMetaContextRequest, decodeInfoItem, decodeServerReply, decodeMetaContextReply];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 48 }), (bytes) => {
        for (const d of decoders) {
          try {
            d(Buffer.from(bytes));
          } catch (e: unknown) {
            expect(e).toBeInstanceOf(NbdProtocolError);
          }
        }
      }),
    );
  });
});
