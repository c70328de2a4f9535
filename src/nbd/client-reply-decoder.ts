/**
 * What an NBD client reads in transmission, decoded as a stream (proto.md
 * "Simple reply message" and "Structured reply chunk message types"):
 *
 *   header ──simple, READ data follows──▶ payload into the sink's target ─▶ simpleReplyDone
 *     │  ──simple, no data─────────────────────────────────────────────────▶ simpleReplyDone
 *     │  ──OFFSET_DATA (20 + 8 bytes)──▶ payload into the sink's target ──▶ offsetDataDone
 *     └──any other chunk──────────────▶ payload copied whole ─────────────▶ chunk
 *
 * READ data is never buffered here. Once a header says where its bytes belong, the
 * sink (the connection) validates it and hands out the destination (a view of
 * the READ's own buffer), and each socket chunk's bytes are copied straight into
 * it as they arrive. Before this, a 1 MiB data chunk was joined from its 64 KiB
 * socket reads and then copied again into the READ buffer. Better still, the
 * socket input may read straight into the rest of the current target
 * (`directTarget`/`pushedDirect`, see client-socket-input.ts), so for most READ
 * bytes the kernel's copy is the only one.
 *
 * Invariants:
 * - `push` keeps no reference to its chunk once it returns: partial headers go to a
 *   28-byte scratch, other chunks' payloads are copied, READ data is copied into
 *   its target. So the chunk may be a reused socket read buffer.
 * - Every header is checked before any payload byte is written: magic, chunk size
 *   (at most `maxChunk`), OFFSET_DATA at least its 8-byte offset; then the sink's
 *   own checks (known cookie, chunk type allowed for the command, range inside the
 *   request, no overlap, the DF rule), which throw instead of returning a target.
 * - A direct target is the unfilled rest of the current target and nothing more,
 *   so a read into it cannot take bytes of the next reply; `pushedDirect` refuses
 *   bytes said to be written anywhere but at the target's next unfilled byte.
 * - A target is completely filled before its *Done callback. A stream that stops
 *   inside a reply never gets there; `end()` reports it.
 * - Once the decoder or its sink has thrown, the stream is out of step: every later
 *   `push` or `pushedDirect` throws the same error.
 */
import { NbdProtocolError } from "../errors.js";
import { NBD_HEADER_SIMPLE_REPLY, NBD_HEADER_STRUCTURED_REPLY, NBD_MAX_PAYLOAD, NBD_REPLY_TYPE_OFFSET_DATA, NBD_SIMPLE_REPLY_MAGIC, NBD_STRUCTURED_REPLY_MAGIC } from "./constants.js";

/** Structured header plus OFFSET_DATA's offset field: the longest header. */
const HEAD_MAX = NBD_HEADER_STRUCTURED_REPLY + 8;

/** The receiver of decoded replies. Methods throw NbdProtocolError to refuse one. */
export interface ReplySink {
  /**
   * A simple reply's header. Returns the buffer its READ data fills (exactly the
   * READ's length), or undefined when no payload follows (an error reply, or a
   * command without data).
   */
  simpleReply(error: number, cookie: bigint): Buffer | undefined;
  /** The simple reply is complete; `data` is the filled target, if there was one. */
  simpleReplyDone(error: number, cookie: bigint, data: Buffer | undefined): void;
  /** An OFFSET_DATA chunk's header and offset: returns where its `length` data bytes go. */
  offsetData(flags: number, cookie: bigint, offset: number, length: number): Buffer;
  /** The target of the last offsetData is now filled. */
  offsetDataDone(flags: number, cookie: bigint): void;
  /** Any other structured chunk, with its whole payload (a copy the sink may keep). */
  chunk(flags: number, type: number, cookie: bigint, payload: Buffer): void;
}

/** The reply whose payload is being received. */
type Receiving =
  | { kind: "simple"; error: number; cookie: bigint; target: Buffer; filled: number }
  | { kind: "data"; flags: number; cookie: bigint; target: Buffer; filled: number }
  | { kind: "chunk"; flags: number; type: number; cookie: bigint; target: Buffer; filled: number };

export class ReplyDecoder {
  private readonly head = Buffer.alloc(HEAD_MAX);
  private headLen = 0;
  private receiving: Receiving | undefined;
  private broken: Error | undefined;

  constructor(
    private readonly sink: ReplySink,
    private readonly maxChunk = NBD_MAX_PAYLOAD + 64,
  ) {}

  /** Feed received bytes; calls the sink for each reply event, in stream order. */
  push(chunk: Buffer): void {
    this.guarded(() => {
      let pos = 0;
      while (pos < chunk.length) pos = this.receiving !== undefined ? this.fill(this.receiving, chunk, pos) : this.header(chunk, pos);
    });
  }

  /**
   * Where the next received bytes may be written directly (by the socket read
   * itself): the unfilled rest of the current payload's target, if at least `min`
   * bytes of it remain, else undefined. Exactly those bytes belong there, so a read
   * into it can take nothing that belongs to the next reply.
   */
  directTarget(min: number): Buffer | undefined {
    const r = this.receiving;
    if (r === undefined || this.broken !== undefined || r.target.length - r.filled < min) return undefined;
    return r.target.subarray(r.filled);
  }

  /** The first `n` bytes of `region`, the last directTarget(), were written in place. */
  pushedDirect(region: Buffer, n: number): void {
    this.guarded(() => {
      const r = this.receiving;
      // Refuse anything but the exact place the next payload bytes belong.
      if (r === undefined || region.buffer !== r.target.buffer || region.byteOffset !== r.target.byteOffset + r.filled || n > r.target.length - r.filled) {
        throw new Error("bytes were read into a buffer that is not where the reply's next payload bytes go");
      }
      r.filled += n;
      if (r.filled === r.target.length) {
        this.receiving = undefined;
        this.deliver(r);
      }
    });
  }

  /** Run a step; after any error, the stream is out of step for good. */
  private guarded(step: () => void): void {
    if (this.broken !== undefined) throw this.broken;
    try {
      step();
    } catch (e: unknown) {
      this.broken = e instanceof Error ? e : new Error(String(e));
      throw this.broken;
    }
  }

  /** The stream ended. Throws NbdProtocolError if it ended inside a reply. */
  end(): void {
    const r = this.receiving;
    if (r !== undefined) {
      throw new NbdProtocolError(`stream ended ${r.filled} of ${r.target.length} payload bytes into a reply for cookie ${r.cookie}`);
    }
    if (this.headLen > 0) throw new NbdProtocolError(`stream ended ${this.headLen} bytes into a reply header`);
  }

  /** Copy payload bytes into the current target; deliver the reply when it is full. */
  private fill(r: Receiving, chunk: Buffer, pos: number): number {
    const step = Math.min(r.target.length - r.filled, chunk.length - pos);
    chunk.copy(r.target, r.filled, pos, pos + step);
    r.filled += step;
    if (r.filled === r.target.length) {
      this.receiving = undefined;
      this.deliver(r);
    }
    return pos + step;
  }

  private deliver(r: Receiving): void {
    if (r.kind === "simple") this.sink.simpleReplyDone(r.error, r.cookie, r.target);
    else if (r.kind === "data") this.sink.offsetDataDone(r.flags, r.cookie);
    else this.sink.chunk(r.flags, r.type, r.cookie, r.target);
  }

  /**
   * Gather header bytes in the scratch (a few dozen bytes per reply, so always
   * copied: simpler than reading in place, and never tied to the chunk).
   */
  private header(chunk: Buffer, pos: number): number {
    for (;;) {
      const need = this.headerLength();
      if (this.headLen === need) break;
      const step = Math.min(need - this.headLen, chunk.length - pos);
      chunk.copy(this.head, this.headLen, pos, pos + step);
      this.headLen += step;
      pos += step;
      if (this.headLen < need) return pos;
    }
    this.headLen = 0;
    this.startReply();
    return pos;
  }

  /** How long the header in the scratch is, as far as its bytes so far tell; checks them. */
  private headerLength(): number {
    const h = this.head;
    if (this.headLen < 4) return 4;
    const magic = h.readUInt32BE(0);
    if (magic === NBD_SIMPLE_REPLY_MAGIC) return NBD_HEADER_SIMPLE_REPLY;
    if (magic !== NBD_STRUCTURED_REPLY_MAGIC) throw new NbdProtocolError(`bad reply magic 0x${magic.toString(16)}`);
    if (this.headLen < NBD_HEADER_STRUCTURED_REPLY) return NBD_HEADER_STRUCTURED_REPLY;
    const length = h.readUInt32BE(16);
    if (length > this.maxChunk) throw new NbdProtocolError(`structured reply chunk of ${length} bytes exceeds ${this.maxChunk}`);
    if (h.readUInt16BE(6) !== NBD_REPLY_TYPE_OFFSET_DATA) return NBD_HEADER_STRUCTURED_REPLY;
    if (length < 8) throw new NbdProtocolError(`OFFSET_DATA chunk of ${length} bytes`);
    return HEAD_MAX;
  }

  /** A whole header is in the scratch: ask the sink where the payload goes. */
  private startReply(): void {
    const h = this.head;
    const cookie = h.readBigUInt64BE(8);
    if (h.readUInt32BE(0) === NBD_SIMPLE_REPLY_MAGIC) {
      const error = h.readUInt32BE(4);
      const target = this.sink.simpleReply(error, cookie);
      if (target === undefined || target.length === 0) this.sink.simpleReplyDone(error, cookie, target);
      else this.receiving = { kind: "simple", error, cookie, target, filled: 0 };
      return;
    }
    const flags = h.readUInt16BE(4);
    const type = h.readUInt16BE(6);
    const length = h.readUInt32BE(16);
    if (type === NBD_REPLY_TYPE_OFFSET_DATA) {
      // Exact for offsets below 2^53; anything larger lies outside every request anyway.
      const offset = h.readUInt32BE(20) * 2 ** 32 + h.readUInt32BE(24);
      const target = this.sink.offsetData(flags, cookie, offset, length - 8);
      if (target.length !== length - 8) throw new Error(`reply sink gave a ${target.length}-byte target for ${length - 8} bytes of OFFSET_DATA`);
      if (target.length === 0) this.sink.offsetDataDone(flags, cookie);
      else this.receiving = { kind: "data", flags, cookie, target, filled: 0 };
      return;
    }
    if (length === 0) this.sink.chunk(flags, type, cookie, Buffer.alloc(0));
    else this.receiving = { kind: "chunk", flags, type, cookie, target: Buffer.allocUnsafe(length), filled: 0 };
  }
}
