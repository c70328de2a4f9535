/**
 * Incremental frame decoder (grpc-js stream-decoder style): `push(chunk)` returns
 * every whole frame now available, keeping an explicit read state between calls.
 * It enforces a maximum frame size, and throws NbdProtocolError on a framing
 * violation; the caller then closes the connection.
 *
 * - ServerFrameDecoder: what a server reads: client flags, then option requests,
 *   then (after `enterTransmission()`) requests with their WRITE payloads.
 *   An oversized WRITE payload is discarded in stream and surfaced as a frame with
 *   `oversized: true`, so the server can fail that one command and stay in sync.
 *
 * What a client reads in transmission is decoded by ReplyDecoder in
 * client-reply-decoder.ts, which streams READ data into its destination instead
 * of framing whole replies.
 */
import { NbdProtocolError } from "../errors.js";
import type { BufferPool } from "./buffer-pool.js";
import { ByteQueue } from "./byte-queue.js";
import {
  NBD_CMD_WRITE,
  NBD_HEADER_REQUEST,
  NBD_MAX_OPTION_LENGTH,
  NBD_MAX_PAYLOAD,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_STARTTLS,
} from "./constants.js";
import { decodeOptionHeader, OPTION_HEADER_LENGTH } from "./handshake-codec.js";
import { decodeRequestHeader, type RequestHeader } from "./transmission-codec.js";

export type ServerFrame =
  | { kind: "client-flags"; flags: number }
  | { kind: "option"; option: number; data: Buffer }
  | { kind: "request"; header: RequestHeader; payload?: Buffer; oversized?: true };

/**
 * "held": an option that may end negotiation (GO, EXPORT_NAME, STARTTLS) was
 * framed; bytes behind it stay buffered until the connection decides:
 * `enterTransmission()`, `resumeOptions()` (it was refused), or a TLS switch.
 */
type ServerState = "client-flags" | "options" | "held" | "transmission";

export class ServerFrameDecoder {
  private readonly q = new ByteQueue();
  private state: ServerState;
  /** WRITE whose payload is being assembled (or discarded, when oversized). */
  private pending: { header: RequestHeader; payload: Buffer | undefined; filled: number } | undefined;

  /** `initial: "options"` resumes option framing on a fresh TLS stream after STARTTLS. */
  constructor(
    initial: "client-flags" | "options" = "client-flags",
    private readonly maxOption = NBD_MAX_OPTION_LENGTH,
    private readonly maxPayload = NBD_MAX_PAYLOAD,
    private readonly pool?: BufferPool,
  ) {
    this.state = initial;
  }

  get buffered(): number {
    return this.q.length + (this.pending?.filled ?? 0);
  }

  /** Switch to transmission framing (after a successful GO / EXPORT_NAME). */
  enterTransmission(): void {
    this.state = "transmission";
  }

  /** The held option was refused: keep framing options. */
  resumeOptions(): void {
    if (this.state === "held") this.state = "options";
  }

  /** Bytes received but not yet framed (must be empty at a STARTTLS switch). */
  takeRemainder(): Buffer {
    return this.q.drain();
  }

  /**
   * Feed received bytes. With `transient`, `chunk` is a reused read buffer
   * (socket `onread`): whatever must outlive this call is copied out of it, and
   * WRITE payloads are copied exactly once, straight into their own buffer.
   */
  push(chunk: Buffer, transient = false): ServerFrame[] {
    const out: ServerFrame[] = [];
    let pos = 0;
    const keep = (from: number, to: number): void => {
      if (to > from) this.q.push(transient ? Buffer.from(chunk.subarray(from, to)) : chunk.subarray(from, to));
    };
    while (pos < chunk.length || this.q.length > 0) {
      if (this.state !== "transmission") {
        keep(pos, chunk.length);
        pos = chunk.length;
        if (this.state === "held") return out;
        const f = this.nextHandshake();
        if (f === undefined) return out;
        out.push(f);
        continue;
      }
      const p = this.pending;
      if (p !== undefined) {
        const need = p.header.length - p.filled;
        const fromQueue = Math.min(need, this.q.length);
        if (fromQueue > 0) {
          const b = this.q.take(fromQueue);
          if (p.payload) b.copy(p.payload, p.filled);
          p.filled += fromQueue;
        }
        const fromChunk = Math.min(p.header.length - p.filled, chunk.length - pos);
        if (fromChunk > 0) {
          if (p.payload) chunk.copy(p.payload, p.filled, pos, pos + fromChunk);
          p.filled += fromChunk;
          pos += fromChunk;
        }
        if (p.filled < p.header.length) return out;
        this.pending = undefined;
        out.push(p.payload ? { kind: "request", header: p.header, payload: p.payload } : { kind: "request", header: p.header, oversized: true });
        continue;
      }
      // A request header: complete it in the queue if one is partly buffered.
      if (this.q.length > 0 || chunk.length - pos < NBD_HEADER_REQUEST) {
        const want = Math.min(NBD_HEADER_REQUEST - this.q.length, chunk.length - pos);
        if (want > 0) keep(pos, pos + want);
        pos += Math.max(want, 0);
        if (this.q.length < NBD_HEADER_REQUEST) return out;
        this.startRequest(decodeRequestHeader(this.q.take(NBD_HEADER_REQUEST)), out);
      } else {
        this.startRequest(decodeRequestHeader(chunk.subarray(pos, pos + NBD_HEADER_REQUEST)), out);
        pos += NBD_HEADER_REQUEST;
      }
    }
    return out;
  }

  private startRequest(h: RequestHeader, out: ServerFrame[]): void {
    if (h.type !== NBD_CMD_WRITE || h.length === 0) {
      out.push(h.type === NBD_CMD_WRITE ? { kind: "request", header: h, payload: Buffer.alloc(0) } : { kind: "request", header: h });
      return;
    }
    // An oversized payload is read and dropped so the stream stays in sync.
    const payload = h.length > this.maxPayload ? undefined : (this.pool?.get(h.length) ?? Buffer.allocUnsafe(h.length));
    this.pending = { header: h, payload, filled: 0 };
  }

  private nextHandshake(): ServerFrame | undefined {
    if (this.state === "client-flags") {
      if (this.q.length < 4) return undefined;
      const flags = this.q.take(4).readUInt32BE(0);
      this.state = "options";
      return { kind: "client-flags", flags };
    }
    if (this.q.length < OPTION_HEADER_LENGTH) return undefined;
    const h = decodeOptionHeader(this.q.peek(OPTION_HEADER_LENGTH));
    if (h.length > this.maxOption) {
      throw new NbdProtocolError(`option ${h.option} payload of ${h.length} bytes exceeds ${this.maxOption}`);
    }
    if (this.q.length < OPTION_HEADER_LENGTH + h.length) return undefined;
    this.q.skip(OPTION_HEADER_LENGTH);
    if (h.option === NBD_OPT_GO || h.option === NBD_OPT_EXPORT_NAME || h.option === NBD_OPT_STARTTLS) this.state = "held";
    return { kind: "option", option: h.option, data: Buffer.from(this.q.take(h.length)) };
  }
}
