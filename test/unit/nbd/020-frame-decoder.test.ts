/**
 * The server's incremental decoder must frame a valid stream identically however
 * it is cut into chunks: at every single offset, byte by byte, and at random cut
 * sets. (The client's streaming reply decoder: 021-client-reply-decoder.test.ts.)
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NbdProtocolError } from "../../../src/errors.js";
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_MAX_OPTION_LENGTH,
  NBD_MAX_PAYLOAD,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
} from "../../../src/nbd/constants.js";
import { BufferPool } from "../../../src/nbd/buffer-pool.js";
import { ServerFrameDecoder, type ServerFrame } from "../../../src/nbd/frame-decoder.js";
import { encodeClientFlags, encodeInfoRequest, encodeMetaContextRequest, encodeOption } from "../../../src/nbd/handshake-codec.js";
import { encodeRequestHeader, type RequestHeader } from "../../../src/nbd/transmission-codec.js";
import { cutAt, frameKey } from "../../support/stream-cuts.js";

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function request(type: number, cookie: bigint, offset: number, length: number, flags = 0): RequestHeader {
  return { flags, type, cookie, offset, length };
}

// ---- server side -----------------------------------------------------------

const goData = encodeInfoRequest({ name: "lun/a", infos: [3] });
const metaData = encodeMetaContextRequest({ exportName: "lun/a", queries: ["base:allocation"] });
const requests: { header: RequestHeader; payload?: Buffer }[] = [
  { header: request(NBD_CMD_READ, 1n, 0, 4096) },
  { header: request(NBD_CMD_WRITE, 2n, 512, 100, NBD_CMD_FLAG_FUA), payload: pattern(100, 2) },
  { header: request(NBD_CMD_WRITE, 3n, 7, 1), payload: pattern(1, 3) },
  { header: request(NBD_CMD_FLUSH, 4n, 0, 0) },
  { header: request(NBD_CMD_WRITE, 5n, 65536, 5000), payload: pattern(5000, 5) },
  { header: request(NBD_CMD_TRIM, 6n, 0, 1 << 20) },
  { header: request(NBD_CMD_BLOCK_STATUS, 7n, 0, 1 << 20, NBD_CMD_FLAG_REQ_ONE) },
  { header: request(NBD_CMD_DISC, 8n, 0, 0) },
];

const serverStream = Buffer.concat([
  encodeClientFlags(3),
  encodeOption(NBD_OPT_STRUCTURED_REPLY),
  encodeOption(NBD_OPT_LIST),
  encodeOption(NBD_OPT_SET_META_CONTEXT, metaData),
  encodeOption(NBD_OPT_INFO, goData),
  encodeOption(NBD_OPT_GO, goData),
  ...requests.flatMap((r) => [encodeRequestHeader(r.header), ...(r.payload ? [r.payload] : [])]),
]);

const expectedServerFrames: ServerFrame[] = [
  { kind: "client-flags", flags: 3 },
  { kind: "option", option: NBD_OPT_STRUCTURED_REPLY, data: Buffer.alloc(0) },
  { kind: "option", option: NBD_OPT_LIST, data: Buffer.alloc(0) },
  { kind: "option", option: NBD_OPT_SET_META_CONTEXT, data: metaData },
  { kind: "option", option: NBD_OPT_INFO, data: goData },
  { kind: "option", option: NBD_OPT_GO, data: goData },
  ...requests.map((r): ServerFrame => (r.payload ? { kind: "request", header: r.header, payload: r.payload } : { kind: "request", header: r.header })),
];

/** Play the server connection's part: on GO, enter transmission and frame what is buffered. */
function decodeServer(chunks: readonly Buffer[], d = new ServerFrameDecoder()): ServerFrame[] {
  const frames: ServerFrame[] = [];
  const take = (fs: ServerFrame[]): void => {
    for (const f of fs) {
      frames.push(f);
      if (f.kind === "option" && f.option === NBD_OPT_GO) {
        d.enterTransmission();
        take(d.push(Buffer.alloc(0)));
      }
    }
  };
  for (const c of chunks) take(d.push(c));
  expect(d.buffered).toBe(0);
  return frames;
}

describe("ServerFrameDecoder", () => {
  it("frames the whole stream in one chunk", () => {
    expect(decodeServer([serverStream])).toEqual(expectedServerFrames);
  });

  it("frames identically when split at every offset", () => {
    const want = frameKey(expectedServerFrames);
    for (let i = 0; i <= serverStream.length; i++) {
      const got = frameKey(decodeServer([serverStream.subarray(0, i), serverStream.subarray(i)]));
      if (got !== want) expect({ splitAt: i, frames: got }).toEqual({ splitAt: i, frames: want });
    }
  });

  it("frames identically when fed one byte at a time", () => {
    const bytes = [...serverStream].map((x) => Buffer.from([x]));
    expect(frameKey(decodeServer(bytes))).toBe(frameKey(expectedServerFrames));
  });

  it("frames identically at random multi-split patterns", () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: serverStream.length }), { maxLength: 40 }), (cuts) => {
        expect(frameKey(decodeServer(cutAt(serverStream, cuts)))).toBe(frameKey(expectedServerFrames));
      }),
      { numRuns: 300 },
    );
  });

  it("frames identically from a reused read buffer (transient chunks), scribbled after every push", () => {
    const scratch = Buffer.alloc(serverStream.length);
    const feed = (cuts: readonly number[]): string => {
      const d = new ServerFrameDecoder("client-flags", undefined, undefined, new BufferPool());
      const frames: ServerFrame[] = [];
      const take = (fs: ServerFrame[]): void => {
        for (const f of fs) {
          frames.push(f);
          if (f.kind === "option" && f.option === NBD_OPT_GO) {
            d.enterTransmission();
            take(d.push(Buffer.alloc(0), true));
          }
        }
      };
      for (const c of cutAt(serverStream, cuts)) {
        c.copy(scratch);
        take(d.push(scratch.subarray(0, c.length), true));
        scratch.fill(0xa5); // the socket reuses its buffer for the next read
      }
      return frameKey(frames);
    };
    const want = frameKey(expectedServerFrames);
    for (let i = 0; i <= serverStream.length; i += 7) {
      const got = feed([i]);
      if (got !== want) expect({ splitAt: i, frames: got }).toEqual({ splitAt: i, frames: want });
    }
    fc.assert(
      fc.property(fc.array(fc.nat({ max: serverStream.length }), { maxLength: 40 }), (cuts) => {
        expect(feed(cuts)).toBe(want);
      }),
      { numRuns: 200 },
    );
  });

  it("assembles pooled (>= 64 KiB) WRITE payloads from transient chunks", () => {
    const big = pattern(70_000, 9);
    const w = request(NBD_CMD_WRITE, 1n, 0, big.length);
    const r = request(NBD_CMD_READ, 2n, 0, 512);
    const stream = Buffer.concat([encodeRequestHeader(w), big, encodeRequestHeader(r), encodeRequestHeader(w), big]);
    const scratch = Buffer.alloc(stream.length);
    fc.assert(
      fc.property(fc.array(fc.nat({ max: stream.length }), { maxLength: 12 }), (cuts) => {
        const d = new ServerFrameDecoder("options", undefined, undefined, new BufferPool());
        d.enterTransmission();
        const frames: ServerFrame[] = [];
        for (const c of cutAt(stream, cuts)) {
          c.copy(scratch);
          frames.push(...d.push(scratch.subarray(0, c.length), true));
          scratch.fill(0x5a);
        }
        expect(frameKey(frames)).toBe(
          frameKey([
            { kind: "request", header: w, payload: big },
            { kind: "request", header: r },
            { kind: "request", header: w, payload: big },
          ]),
        );
      }),
      { numRuns: 100 },
    );
  });

  it("holds requests pipelined behind GO until the outcome is known", () => {
    const d = new ServerFrameDecoder();
    const read = encodeRequestHeader(request(NBD_CMD_READ, 9n, 0, 512));
    const frames = d.push(Buffer.concat([encodeClientFlags(1), encodeOption(NBD_OPT_GO, goData), read]));
    expect(frames.map((f) => f.kind)).toEqual(["client-flags", "option"]);
    expect(d.buffered).toBe(28);
    d.enterTransmission();
    expect(d.push(Buffer.alloc(0))).toEqual([{ kind: "request", header: request(NBD_CMD_READ, 9n, 0, 512) }]);
  });

  it("resumes option framing after a refused GO", () => {
    const d = new ServerFrameDecoder();
    const frames = d.push(Buffer.concat([encodeClientFlags(1), encodeOption(NBD_OPT_GO, goData), encodeOption(NBD_OPT_LIST)]));
    expect(frames).toHaveLength(2);
    d.resumeOptions();
    expect(d.push(Buffer.alloc(0))).toEqual([{ kind: "option", option: NBD_OPT_LIST, data: Buffer.alloc(0) }]);
  });

  it("starts at option framing after STARTTLS", () => {
    const d = new ServerFrameDecoder("options");
    expect(d.push(encodeOption(NBD_OPT_LIST))).toEqual([{ kind: "option", option: NBD_OPT_LIST, data: Buffer.alloc(0) }]);
  });

  it("rejects an option longer than the maximum as soon as its header arrives", () => {
    const header = encodeOption(NBD_OPT_LIST).subarray(0, 16);
    header.writeUInt32BE(NBD_MAX_OPTION_LENGTH + 1, 12);
    const d = new ServerFrameDecoder("options");
    expect(() => d.push(header)).toThrow(NbdProtocolError);
    const huge = Buffer.from(header);
    huge.writeUInt32BE(0x40000000, 12); // 1 GiB
    expect(() => new ServerFrameDecoder("options").push(huge)).toThrow(NbdProtocolError);
  });

  it("accepts an option of exactly the maximum length", () => {
    const d = new ServerFrameDecoder("options");
    const frames = d.push(encodeOption(NBD_OPT_LIST, Buffer.alloc(NBD_MAX_OPTION_LENGTH)));
    expect(frames).toHaveLength(1);
  });

  it("rejects a bad option magic and a bad request magic", () => {
    expect(() => new ServerFrameDecoder("options").push(Buffer.alloc(16, 0x41))).toThrow(NbdProtocolError);
    const d = new ServerFrameDecoder("options");
    d.enterTransmission();
    expect(() => d.push(Buffer.alloc(28, 0x41))).toThrow(NbdProtocolError);
  });

  it("discards an oversized WRITE payload and stays in sync", () => {
    const d = new ServerFrameDecoder("options");
    d.enterTransmission();
    const big = NBD_MAX_PAYLOAD + 1;
    const w = request(NBD_CMD_WRITE, 10n, 0, big);
    const r = request(NBD_CMD_READ, 11n, 0, 512);
    const frames: ServerFrame[] = [];
    frames.push(...d.push(encodeRequestHeader(w)));
    const mib = Buffer.alloc(1024 * 1024, 0x5a);
    for (let sent = 0; sent < big; sent += mib.length) frames.push(...d.push(mib.subarray(0, Math.min(mib.length, big - sent))));
    expect(frames).toEqual([{ kind: "request", header: w, oversized: true }]);
    expect(d.push(encodeRequestHeader(r))).toEqual([{ kind: "request", header: r }]);
    expect(d.buffered).toBe(0);
  });

  it("discards an oversized WRITE whose tail shares a chunk with the next request", () => {
    const d = new ServerFrameDecoder("options", NBD_MAX_OPTION_LENGTH, 1000);
    d.enterTransmission();
    const w = request(NBD_CMD_WRITE, 1n, 0, 1001);
    const r = request(NBD_CMD_READ, 2n, 0, 512);
    const stream = Buffer.concat([encodeRequestHeader(w), Buffer.alloc(1001, 1), encodeRequestHeader(r)]);
    for (let i = 0; i <= stream.length; i++) {
      const dd = new ServerFrameDecoder("options", NBD_MAX_OPTION_LENGTH, 1000);
      dd.enterTransmission();
      const frames = [...dd.push(stream.subarray(0, i)), ...dd.push(stream.subarray(i))];
      expect(frames).toEqual([
        { kind: "request", header: w, oversized: true },
        { kind: "request", header: r },
      ]);
    }
    expect(d.push(stream)).toHaveLength(2);
  });

  it("accepts a WRITE of exactly the maximum payload", () => {
    const d = new ServerFrameDecoder("options", NBD_MAX_OPTION_LENGTH, 4096);
    d.enterTransmission();
    const w = request(NBD_CMD_WRITE, 1n, 0, 4096);
    const frames = d.push(Buffer.concat([encodeRequestHeader(w), pattern(4096, 1)]));
    expect(frames).toEqual([{ kind: "request", header: w, payload: pattern(4096, 1) }]);
  });
});
