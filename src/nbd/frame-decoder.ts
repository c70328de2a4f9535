/**
 * Incremental frame decoders (grpc-js stream-decoder style): `push(chunk)` returns
 * every whole frame now available, keeping an explicit read state between calls.
 * Each enforces a maximum frame size, and throws NbdProtocolError on a framing
 * violation; the caller then closes the connection.
 *
 * - ServerFrameDecoder: what a server reads: client flags, then option requests,
 *   then (after `enterTransmission()`) requests with their WRITE payloads.
 *   An oversized WRITE payload is discarded in stream and surfaced as a frame with
 *   `oversized: true`, so the server can fail that one command and stay in sync.
 * - ReplyDecoder: what a client reads in transmission: simple replies (whose READ
 *   payload length it learns from the pending request) and structured chunks.
 */
import { NbdProtocolError } from "../errors.js";
import { ByteQueue } from "./byte-queue.js";
import {
  NBD_CMD_WRITE,
  NBD_HEADER_REQUEST,
  NBD_HEADER_SIMPLE_REPLY,
  NBD_HEADER_STRUCTURED_REPLY,
  NBD_MAX_OPTION_LENGTH,
  NBD_MAX_PAYLOAD,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
} from "./constants.js";
import { decodeOptionHeader, OPTION_HEADER_LENGTH } from "./handshake-codec.js";
import { decodeRequestHeader, type RequestHeader } from "./transmission-codec.js";

export type ServerFrame =
  | { kind: "client-flags"; flags: number }
  | { kind: "option"; option: number; data: Buffer }
  | { kind: "request"; header: RequestHeader; payload?: Buffer; oversized?: true };

type ServerState = "client-flags" | "options" | "transmission" | "discard";

export class ServerFrameDecoder {
  private readonly q = new ByteQueue();
  private state: ServerState;
  private discardLeft = 0;
  private pendingHeader: RequestHeader | undefined;

  /** `initial: "options"` resumes option framing on a fresh TLS stream after STARTTLS. */
  constructor(
    initial: "client-flags" | "options" = "client-flags",
    private readonly maxOption = NBD_MAX_OPTION_LENGTH,
    private readonly maxPayload = NBD_MAX_PAYLOAD,
  ) {
    this.state = initial;
  }

  get buffered(): number {
    return this.q.length;
  }

  /** Switch to transmission framing (after a successful GO / EXPORT_NAME). */
  enterTransmission(): void {
    this.state = "transmission";
  }

  /** Bytes received but not yet framed (must be empty at a STARTTLS switch). */
  takeRemainder(): Buffer {
    return this.q.drain();
  }

  push(chunk: Buffer): ServerFrame[] {
    this.q.push(chunk);
    const out: ServerFrame[] = [];
    for (;;) {
      const f = this.next();
      if (f === undefined) return out;
      out.push(f);
    }
  }

  private next(): ServerFrame | undefined {
    switch (this.state) {
      case "client-flags": {
        if (this.q.length < 4) return undefined;
        const flags = this.q.take(4).readUInt32BE(0);
        this.state = "options";
        return { kind: "client-flags", flags };
      }
      case "options": {
        if (this.q.length < OPTION_HEADER_LENGTH) return undefined;
        const h = decodeOptionHeader(this.q.peek(OPTION_HEADER_LENGTH));
        if (h.length > this.maxOption) {
          throw new NbdProtocolError(`option ${h.option} payload of ${h.length} bytes exceeds ${this.maxOption}`);
        }
        if (this.q.length < OPTION_HEADER_LENGTH + h.length) return undefined;
        this.q.skip(OPTION_HEADER_LENGTH);
        return { kind: "option", option: h.option, data: this.q.take(h.length) };
      }
      case "transmission": {
        let h = this.pendingHeader;
        if (h === undefined) {
          if (this.q.length < NBD_HEADER_REQUEST) return undefined;
          h = decodeRequestHeader(this.q.take(NBD_HEADER_REQUEST));
          if (h.type !== NBD_CMD_WRITE) return { kind: "request", header: h };
          if (h.length > this.maxPayload) {
            this.state = "discard";
            this.discardLeft = h.length;
            this.pendingHeader = h;
            return this.next();
          }
          this.pendingHeader = h;
        }
        if (this.q.length < h.length) return undefined;
        this.pendingHeader = undefined;
        return { kind: "request", header: h, payload: this.q.take(h.length) };
      }
      case "discard": {
        this.discardLeft -= this.q.skip(this.discardLeft);
        if (this.discardLeft > 0) return undefined;
        const h = this.pendingHeader;
        this.pendingHeader = undefined;
        this.state = "transmission";
        if (h === undefined) return undefined;
        return { kind: "request", header: h, oversized: true };
      }
    }
  }
}

export type ReplyFrame =
  | { kind: "simple"; error: number; cookie: bigint; data?: Buffer }
  | { kind: "chunk"; flags: number; type: number; cookie: bigint; payload: Buffer };

/**
 * `readLength(cookie)` tells how many payload bytes follow a successful simple
 * reply: the READ length for a pending READ, 0 otherwise, undefined if unknown.
 */
export class ReplyDecoder {
  private readonly q = new ByteQueue();
  constructor(
    private readonly readLength: (cookie: bigint) => number | undefined,
    private readonly maxChunk = NBD_MAX_PAYLOAD + 64,
  ) {}

  push(chunk: Buffer): ReplyFrame[] {
    this.q.push(chunk);
    const out: ReplyFrame[] = [];
    for (;;) {
      const f = this.next();
      if (f === undefined) return out;
      out.push(f);
    }
  }

  private next(): ReplyFrame | undefined {
    if (this.q.length < 4) return undefined;
    const magic = this.q.peek(4).readUInt32BE(0);
    if (magic === NBD_SIMPLE_REPLY_MAGIC) {
      if (this.q.length < NBD_HEADER_SIMPLE_REPLY) return undefined;
      const h = this.q.peek(NBD_HEADER_SIMPLE_REPLY);
      const error = h.readUInt32BE(4);
      const cookie = h.readBigUInt64BE(8);
      const len = this.readLength(cookie);
      if (len === undefined) throw new NbdProtocolError(`simple reply for unknown cookie ${cookie}`);
      const dataLen = error === 0 ? len : 0;
      if (this.q.length < NBD_HEADER_SIMPLE_REPLY + dataLen) return undefined;
      this.q.skip(NBD_HEADER_SIMPLE_REPLY);
      if (dataLen === 0) return { kind: "simple", error, cookie };
      return { kind: "simple", error, cookie, data: this.q.take(dataLen) };
    }
    if (magic === NBD_STRUCTURED_REPLY_MAGIC) {
      if (this.q.length < NBD_HEADER_STRUCTURED_REPLY) return undefined;
      const h = this.q.peek(NBD_HEADER_STRUCTURED_REPLY);
      const length = h.readUInt32BE(16);
      if (length > this.maxChunk) throw new NbdProtocolError(`structured reply chunk of ${length} bytes exceeds ${this.maxChunk}`);
      if (this.q.length < NBD_HEADER_STRUCTURED_REPLY + length) return undefined;
      const flags = h.readUInt16BE(4);
      const type = h.readUInt16BE(6);
      const cookie = h.readBigUInt64BE(8);
      this.q.skip(NBD_HEADER_STRUCTURED_REPLY);
      return { kind: "chunk", flags, type, cookie, payload: this.q.take(length) };
    }
    throw new NbdProtocolError(`bad reply magic 0x${magic.toString(16)}`);
  }
}
