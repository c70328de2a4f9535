/**
 * The client's streaming reply decoder must deliver exactly what whole-reply
 * framing would (the decoder it replaced: every reply framed once complete), however
 * the stream is cut: at every single offset, byte by byte, at random cut sets, from
 * a reused read buffer scribbled after every push, and with reads landing directly
 * in the READ buffers (the `onread` buffer-function path). Hostile streams must
 * throw NbdProtocolError before a byte is written, and a cut stream must never
 * complete the reply it cut.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NbdProtocolError } from "../../../src/errors.js";
import { NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, NBD_REPLY_TYPE_OFFSET_DATA, NBD_SIMPLE_REPLY_MAGIC } from "../../../src/nbd/constants.js";
import { ReplyDecoder, type ReplySink } from "../../../src/nbd/client-reply-decoder.js";
import { encodeBlockStatus, encodeChunkHeader, encodeErrorChunk, encodeOffsetDataHead, encodeOffsetHole, encodeSimpleReply } from "../../../src/nbd/transmission-codec.js";
import { cutAt, frameKey } from "../../support/stream-cuts.js";

/** A reply as whole-reply framing sees it. */
type Frame =
  | { kind: "simple"; error: number; cookie: bigint; data?: Buffer }
  | { kind: "chunk"; flags: number; type: number; cookie: bigint; payload: Buffer };

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/**
 * The reference: whole-reply framing of a complete stream, the semantics the
 * streaming decoder must keep. A simple reply carries `readLengths(cookie)` data
 * bytes when its error is 0.
 */
function referenceFrames(stream: Buffer, readLengths: ReadonlyMap<bigint, number>): Frame[] {
  const out: Frame[] = [];
  let at = 0;
  while (at < stream.length) {
    if (stream.readUInt32BE(at) === NBD_SIMPLE_REPLY_MAGIC) {
      const error = stream.readUInt32BE(at + 4);
      const cookie = stream.readBigUInt64BE(at + 8);
      const len = error === 0 ? (readLengths.get(cookie) ?? 0) : 0;
      out.push(len > 0 ? { kind: "simple", error, cookie, data: stream.subarray(at + 16, at + 16 + len) } : { kind: "simple", error, cookie });
      at += 16 + len;
    } else {
      const length = stream.readUInt32BE(at + 16);
      out.push({ kind: "chunk", flags: stream.readUInt16BE(at + 4), type: stream.readUInt16BE(at + 6), cookie: stream.readBigUInt64BE(at + 8), payload: stream.subarray(at + 20, at + 20 + length) });
      at += 20 + length;
    }
  }
  return out;
}

/**
 * A sink that rebuilds whole-reply frames from the decoder's events. Targets start
 * as 0xa5 garbage, so a byte the decoder failed to write shows. It refuses cookies
 * it does not know, as the connection does.
 */
function recorder(readLengths: ReadonlyMap<bigint, number>, known: (cookie: bigint) => boolean = () => true): { sink: ReplySink; frames: Frame[] } {
  const frames: Frame[] = [];
  let open: { offset: number; target: Buffer } | undefined;
  const check = (cookie: bigint): void => {
    if (!known(cookie)) throw new NbdProtocolError(`reply for unknown cookie ${cookie}`);
  };
  const sink: ReplySink = {
    simpleReply: (error, cookie) => {
      check(cookie);
      const len = readLengths.get(cookie) ?? 0;
      return error === 0 && len > 0 ? Buffer.alloc(len, 0xa5) : undefined;
    },
    simpleReplyDone: (error, cookie, data) => {
      frames.push(data !== undefined ? { kind: "simple", error, cookie, data } : { kind: "simple", error, cookie });
    },
    offsetData: (_flags, cookie, offset, length) => {
      check(cookie);
      expect(open).toBeUndefined();
      open = { offset, target: Buffer.alloc(length, 0xa5) };
      return open.target;
    },
    offsetDataDone: (flags, cookie) => {
      if (open === undefined) throw new Error("offsetDataDone without offsetData");
      const head = Buffer.alloc(8);
      head.writeBigUInt64BE(BigInt(open.offset));
      frames.push({ kind: "chunk", flags, type: NBD_REPLY_TYPE_OFFSET_DATA, cookie, payload: Buffer.concat([head, open.target]) });
      open = undefined;
    },
    chunk: (flags, type, cookie, payload) => {
      check(cookie);
      frames.push({ kind: "chunk", flags, type, cookie, payload });
    },
  };
  return { sink, frames };
}

/** Feed chunks through one reused buffer, scribbled after every push (a socket's `onread` buffer). */
function decodeTransient(chunks: readonly Buffer[], readLengths: ReadonlyMap<bigint, number>): Frame[] {
  const { sink, frames } = recorder(readLengths);
  const d = new ReplyDecoder(sink);
  const scratch = Buffer.alloc(Math.max(1, ...chunks.map((c) => c.length)));
  for (const c of chunks) {
    c.copy(scratch);
    d.push(scratch.subarray(0, c.length));
    scratch.fill(0x5a);
  }
  d.end();
  return frames;
}

/**
 * Play client-socket-input.ts's user-buffer reads: before each read, ask for a
 * direct target; a read of at most `sizes[i]` bytes lands there (as the kernel
 * would write it) or in the reused buffer.
 */
function decodeDirect(stream: Buffer, sizes: readonly number[], min: number, readLengths: ReadonlyMap<bigint, number>): { frames: Frame[]; direct: number } {
  const { sink, frames } = recorder(readLengths);
  const d = new ReplyDecoder(sink);
  const own = Buffer.alloc(4096);
  let at = 0;
  let i = 0;
  let direct = 0;
  while (at < stream.length) {
    const target = d.directTarget(min);
    const dest = target ?? own;
    const n = Math.min(dest.length, sizes[i++ % sizes.length] ?? 1, stream.length - at);
    stream.copy(dest, 0, at, at + n);
    at += n;
    if (target !== undefined) {
      direct += n;
      d.pushedDirect(target, n);
    } else {
      d.push(own.subarray(0, n));
      own.fill(0x5a);
    }
  }
  d.end();
  return { frames, direct };
}

// ---- a fixed stream with every kind of reply ------------------------------------

const readLengths = new Map<bigint, number>([
  [1n, 4096],
  [2n, 0],
  [3n, 1000],
]);

const replyStream = Buffer.concat([
  encodeSimpleReply(0, 1n),
  pattern(4096, 1),
  encodeSimpleReply(0, 2n),
  encodeSimpleReply(22, 3n), // a failed READ carries no data
  encodeOffsetDataHead(0, 4n, 100, 300),
  pattern(300, 4),
  encodeOffsetHole(0, 4n, 400, 200),
  encodeErrorChunk(NBD_REPLY_FLAG_DONE, 4n, 5, "bad sector", 600),
  encodeBlockStatus(0, 5n, 1, [
    { length: 65536, flag: 3 },
    { length: 4096, flag: 0 },
  ]),
  encodeBlockStatus(NBD_REPLY_FLAG_DONE, 5n, 2, [{ length: 69632, flag: 1 }]),
  encodeChunkHeader({ flags: NBD_REPLY_FLAG_DONE, type: NBD_REPLY_TYPE_NONE, cookie: 6n, length: 0 }),
  encodeErrorChunk(NBD_REPLY_FLAG_DONE, 7n, 28, "full"),
  encodeOffsetDataHead(NBD_REPLY_FLAG_DONE, 8n, 0, 5000),
  pattern(5000, 8),
]);

function chunkFrame(b: Buffer): Frame {
  return { kind: "chunk", flags: b.readUInt16BE(4), type: b.readUInt16BE(6), cookie: b.readBigUInt64BE(8), payload: b.subarray(20) };
}

const expectedReplies: Frame[] = [
  { kind: "simple", error: 0, cookie: 1n, data: pattern(4096, 1) },
  { kind: "simple", error: 0, cookie: 2n },
  { kind: "simple", error: 22, cookie: 3n },
  chunkFrame(Buffer.concat([encodeOffsetDataHead(0, 4n, 100, 300), pattern(300, 4)])),
  chunkFrame(encodeOffsetHole(0, 4n, 400, 200)),
  chunkFrame(encodeErrorChunk(NBD_REPLY_FLAG_DONE, 4n, 5, "bad sector", 600)),
  chunkFrame(
    encodeBlockStatus(0, 5n, 1, [
      { length: 65536, flag: 3 },
      { length: 4096, flag: 0 },
    ]),
  ),
  chunkFrame(encodeBlockStatus(NBD_REPLY_FLAG_DONE, 5n, 2, [{ length: 69632, flag: 1 }])),
  chunkFrame(encodeChunkHeader({ flags: NBD_REPLY_FLAG_DONE, type: NBD_REPLY_TYPE_NONE, cookie: 6n, length: 0 })),
  chunkFrame(encodeErrorChunk(NBD_REPLY_FLAG_DONE, 7n, 28, "full")),
  chunkFrame(Buffer.concat([encodeOffsetDataHead(NBD_REPLY_FLAG_DONE, 8n, 0, 5000), pattern(5000, 8)])),
];

/** Offsets in replyStream where no reply is half-read. */
const boundaries = new Set<number>([0]);
{
  let at = 0;
  for (const f of expectedReplies) {
    at += f.kind === "simple" ? 16 + (f.data?.length ?? 0) : 20 + f.payload.length;
    boundaries.add(at);
  }
}

function decodeReplies(chunks: readonly Buffer[]): Frame[] {
  const { sink, frames } = recorder(readLengths);
  const d = new ReplyDecoder(sink);
  for (const c of chunks) d.push(c);
  d.end();
  return frames;
}

describe("ReplyDecoder (streaming) on a fixed stream", () => {
  it("the reference framing agrees with the hand-written expectation", () => {
    expect(frameKey(referenceFrames(replyStream, readLengths))).toBe(frameKey(expectedReplies));
  });

  it("decodes simple and structured replies in one chunk", () => {
    expect(decodeReplies([replyStream])).toEqual(expectedReplies);
  });

  it("decodes identically when split at every offset", () => {
    const want = frameKey(expectedReplies);
    for (let i = 0; i <= replyStream.length; i++) {
      const got = frameKey(decodeReplies([replyStream.subarray(0, i), replyStream.subarray(i)]));
      if (got !== want) expect({ splitAt: i, frames: got }).toEqual({ splitAt: i, frames: want });
    }
  });

  it("decodes identically from a reused, scribbled read buffer split at every offset", () => {
    const want = frameKey(expectedReplies);
    for (let i = 0; i <= replyStream.length; i++) {
      const got = frameKey(decodeTransient([replyStream.subarray(0, i), replyStream.subarray(i)], readLengths));
      if (got !== want) expect({ splitAt: i, frames: got }).toEqual({ splitAt: i, frames: want });
    }
  });

  it("decodes identically when fed one byte at a time", () => {
    expect(frameKey(decodeTransient([...replyStream].map((x) => Buffer.from([x])), readLengths))).toBe(frameKey(expectedReplies));
  });

  it("decodes identically at random multi-split patterns", () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: replyStream.length }), { maxLength: 40 }), (cuts) => {
        expect(frameKey(decodeTransient(cutAt(replyStream, cuts), readLengths))).toBe(frameKey(expectedReplies));
      }),
      { numRuns: 300 },
    );
  });

  it("decodes identically when reads land directly in the payload targets", () => {
    const want = frameKey(expectedReplies);
    for (const size of [1, 7, 20, 28, 100, 1000, 4096, 1 << 20]) {
      for (const min of [1, 64, 1000]) {
        const { frames } = decodeDirect(replyStream, [size], min, readLengths);
        expect({ size, min, frames: frameKey(frames) }).toEqual({ size, min, frames: want });
      }
    }
    expect(decodeDirect(replyStream, [1000], 1, readLengths).direct).toBeGreaterThan(4096);
  });
});

// ---- random streams against the reference --------------------------------------

/** One reply of a random valid stream; cookies are made unique when the stream is built. */
const replyArb: fc.Arbitrary<(cookie: bigint, lengths: Map<bigint, number>) => Buffer> = fc.oneof(
  fc.record({ error: fc.constantFrom(0, 0, 5, 22), len: fc.integer({ min: 0, max: 3000 }), seed: fc.nat(255) }).map(({ error, len, seed }) => (cookie: bigint, lengths: Map<bigint, number>) => {
    lengths.set(cookie, len);
    return error === 0 ? Buffer.concat([encodeSimpleReply(0, cookie), pattern(len, seed)]) : encodeSimpleReply(error, cookie);
  }),
  fc.record({ done: fc.boolean(), offset: fc.nat(1 << 30), len: fc.integer({ min: 1, max: 3000 }), seed: fc.nat(255) }).map(({ done, offset, len, seed }) => (cookie: bigint) => Buffer.concat([encodeOffsetDataHead(done ? NBD_REPLY_FLAG_DONE : 0, cookie, offset, len), pattern(len, seed)])),
  fc.record({ offset: fc.nat(1 << 30), len: fc.integer({ min: 1, max: 1 << 20 }) }).map(({ offset, len }) => (cookie: bigint) => encodeOffsetHole(0, cookie, offset, len)),
  fc.record({ error: fc.integer({ min: 1, max: 100 }), msg: fc.string({ maxLength: 40 }), offset: fc.option(fc.nat(1 << 30), { nil: undefined }) }).map(({ error, msg, offset }) => (cookie: bigint) => encodeErrorChunk(NBD_REPLY_FLAG_DONE, cookie, error, msg, offset)),
  fc.array(fc.record({ length: fc.integer({ min: 1, max: 1 << 20 }), flag: fc.nat(3) }), { minLength: 1, maxLength: 20 }).map((extents) => (cookie: bigint) => encodeBlockStatus(NBD_REPLY_FLAG_DONE, cookie, 1, extents)),
  fc.constant((cookie: bigint) => encodeChunkHeader({ flags: NBD_REPLY_FLAG_DONE, type: NBD_REPLY_TYPE_NONE, cookie, length: 0 })),
);

const streamArb = fc.array(replyArb, { minLength: 1, maxLength: 12 }).map((replies) => {
  const lengths = new Map<bigint, number>();
  const stream = Buffer.concat(replies.map((r, i) => r(BigInt(i + 1), lengths)));
  return { stream, lengths };
});

describe("ReplyDecoder (streaming) against whole-reply framing, random streams", () => {
  it("gives the reference frames for random streams at random chunkings (reused, scribbled buffer)", () => {
    fc.assert(
      fc.property(streamArb, fc.array(fc.nat(), { maxLength: 30 }), ({ stream, lengths }, rawCuts) => {
        const cuts = rawCuts.map((c) => c % (stream.length + 1));
        expect(frameKey(decodeTransient(cutAt(stream, cuts), lengths))).toBe(frameKey(referenceFrames(stream, lengths)));
      }),
      { numRuns: 400 },
    );
  });

  it("gives the reference frames for random streams read partly in place", () => {
    fc.assert(
      fc.property(streamArb, fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 10 }), fc.integer({ min: 1, max: 2000 }), ({ stream, lengths }, sizes, min) => {
        expect(frameKey(decodeDirect(stream, sizes, min, lengths).frames)).toBe(frameKey(referenceFrames(stream, lengths)));
      }),
      { numRuns: 400 },
    );
  });
});

// ---- hostile streams ---------------------------------------------------------------

describe("ReplyDecoder (streaming) on hostile streams", () => {
  it("rejects a bad reply magic, at any split of its first 4 bytes", () => {
    const bad = Buffer.concat([encodeSimpleReply(0, 2n), Buffer.from("0000000000000000", "hex")]);
    for (let i = 0; i <= bad.length; i++) {
      expect(() => decodeReplies([bad.subarray(0, i), bad.subarray(i)])).toThrow(/bad reply magic 0x0/);
    }
  });

  it("rejects a reply for an unknown cookie at its header, before any payload byte", () => {
    for (const reply of [encodeSimpleReply(0, 99n), encodeOffsetDataHead(0, 99n, 0, 10), encodeOffsetHole(0, 99n, 0, 10)]) {
      const { sink, frames } = recorder(readLengths, (c) => c !== 99n);
      const d = new ReplyDecoder(sink);
      expect(() => d.push(reply)).toThrow(NbdProtocolError);
      expect(frames).toEqual([]);
    }
  });

  it("rejects an oversized structured chunk from its header alone", () => {
    const { sink } = recorder(readLengths);
    const d = new ReplyDecoder(sink, 1024);
    expect(() => d.push(encodeChunkHeader({ flags: 0, type: 1, cookie: 1n, length: 1025 }))).toThrow(/exceeds 1024/);
  });

  it("rejects an OFFSET_DATA chunk too short for its offset without reading past it", () => {
    const { sink, frames } = recorder(readLengths);
    const d = new ReplyDecoder(sink);
    // 20-byte header claiming 4 payload bytes: the next reply's bytes must not be taken as an offset.
    expect(() => d.push(Buffer.concat([encodeChunkHeader({ flags: 0, type: NBD_REPLY_TYPE_OFFSET_DATA, cookie: 4n, length: 4 }), Buffer.alloc(4), encodeSimpleReply(0, 2n)]))).toThrow(
      /OFFSET_DATA chunk of 4 bytes/,
    );
    expect(frames).toEqual([]);
  });

  it("asks the sink before writing: a refused OFFSET_DATA range gets no target, and the decoder stays failed", () => {
    let asked = 0;
    const refuse = new NbdProtocolError("OFFSET_DATA chunk [4096, +10) lies outside the READ request [0, +4096)");
    const sink: ReplySink = {
      simpleReply: () => undefined,
      simpleReplyDone: () => undefined,
      offsetData: () => {
        asked++;
        throw refuse;
      },
      offsetDataDone: () => {
        throw new Error("never");
      },
      chunk: () => undefined,
    };
    const d = new ReplyDecoder(sink);
    const stream = Buffer.concat([encodeOffsetDataHead(NBD_REPLY_FLAG_DONE, 1n, 4096, 10), pattern(10, 1)]);
    expect(() => d.push(stream.subarray(0, 27))).not.toThrow();
    expect(asked).toBe(0);
    expect(() => d.push(stream.subarray(27))).toThrow(refuse);
    expect(asked).toBe(1);
    expect(d.directTarget(1)).toBeUndefined();
    expect(() => d.push(encodeSimpleReply(0, 2n))).toThrow(refuse);
  });

  it("never completes a reply cut short, and end() says so, at every cut", () => {
    const full = frameKey(expectedReplies);
    for (let i = 0; i < replyStream.length; i++) {
      const { sink, frames } = recorder(readLengths);
      const d = new ReplyDecoder(sink);
      d.push(replyStream.subarray(0, i));
      // Only whole replies came out: exactly a prefix of the expected ones.
      const done = expectedReplies.slice(0, frames.length);
      expect(frameKey(frames)).toBe(frameKey(done));
      if (boundaries.has(i)) expect(() => d.end()).not.toThrow();
      else expect(() => d.end()).toThrow(NbdProtocolError);
    }
    expect(frameKey(decodeReplies([replyStream]))).toBe(full);
  });

  it("refuses bytes read into anything but the current target's next free byte", () => {
    const { sink } = recorder(readLengths);
    const d = new ReplyDecoder(sink);
    d.push(Buffer.concat([encodeOffsetDataHead(NBD_REPLY_FLAG_DONE, 8n, 0, 5000), pattern(100, 8)]));
    const target = d.directTarget(1);
    if (target === undefined) throw new Error("expected a direct target");
    expect(target.length).toBe(4900);
    expect(() => d.pushedDirect(target.subarray(1), 10)).toThrow(/not where/);
    expect(() => d.push(pattern(4900, 1))).toThrow(/not where/);
  });
});
