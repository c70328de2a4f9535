/**
 * The transmission phase of one client connection: many requests in flight,
 * matched to replies by cookie, replies in any order (proto.md "Transmission").
 *
 *   submit ─▶ queue ──(slot free: in-flight < maxInFlight, socket not full)──▶ in flight ──DONE──▶ settled
 *               │ abort: rejected at once, never sent           │ abort: rejected at once; the
 *               ▼                                                ▼ cookie stays in flight until the
 *           CancelledError                                         late reply arrives, then dropped
 *
 * Cookies come from a 64-bit counter, so a cookie is never reused, let alone
 * before its reply arrives. A cancelled request keeps its slot: the server is
 * still working on it.
 *
 * Two error kinds, as in libnbd:
 * - a command error (simple reply error, ERROR/ERROR_OFFSET chunk) settles that
 *   command with NbdCommandError; the connection lives on;
 * - a protocol violation (bad magic, unknown cookie, a chunk type the command does
 *   not allow, READ chunks that overlap or leave gaps, …) destroys the socket and
 *   rejects everything pending with the same NbdProtocolError. A closed socket
 *   rejects everything pending with ConnectionClosedError.
 *
 * Backpressure: when socket.write() returns false, sending stops until 'drain'.
 *
 * Receiving: the connection is the ReplyDecoder's sink (client-reply-decoder.ts),
 * called for each reply event in stream order. It validates a reply from its
 * header, before any payload byte is written: the cookie must be in flight, the
 * chunk type allowed for the command, an OFFSET_DATA range inside the READ and
 * not overlapping (ReadAssembler). Only then does the decoder stream the READ
 * data straight into the READ's buffer. Bytes come from the socket's SocketInput
 * (client-socket-input.ts): on plain sockets, a reused read buffer.
 */
import type { Socket } from "node:net";
import { CancelledError, ConnectionClosedError, errorMessage, NbdCommandError, NbdProtocolError } from "../errors.js";
import { ReadAssembler } from "./client-read-assembler.js";
import {
  CMD_NAMES,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_READ,
  NBD_HEADER_REQUEST,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_IS_ERR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_HOLE,
} from "./constants.js";
import { errnoFromWire } from "./errno.js";
import { ReplyDecoder, type ReplySink } from "./client-reply-decoder.js";
import { SocketInput } from "./client-socket-input.js";
import { decodeBlockStatus, decodeErrorChunk, decodeOffsetHole, encodeRequestHeader, type BlockDescriptor } from "./transmission-codec.js";

export interface CommandSpec {
  type: number;
  flags: number;
  offset: number;
  length: number;
  payload?: Buffer;
  signal?: AbortSignal;
}

export interface CommandOutcome {
  /** READ data. */
  data?: Buffer;
  /** BLOCK_STATUS extents by context id, relative lengths as sent. */
  status?: Map<number, BlockDescriptor[]>;
}

interface Pending {
  cookie: bigint;
  spec: CommandSpec;
  cancelled: boolean;
  error: NbdCommandError | undefined;
  read: ReadAssembler | undefined;
  status: Map<number, BlockDescriptor[]> | undefined;
  resolve: (o: CommandOutcome) => void;
  reject: (e: Error) => void;
  unlisten: () => void;
}

export interface ConnectionInfo {
  structuredReplies: boolean;
  /** Negotiated meta context ids. */
  contextIds: ReadonlySet<number>;
  maxInFlight: number;
}

type State = "open" | "closing" | "closed";

/**
 * Let a socket read land straight in a READ's buffer only when at least this much
 * of the payload is still to come: a direct read stops at the payload's end, so for
 * a short rest one read into the shared buffer (which may take several replies at
 * once) is cheaper than an extra read.
 */
const DIRECT_READ_MIN = 64 * 1024;

function cmdName(type: number): string {
  return `NBD_CMD_${CMD_NAMES[type] ?? type}`;
}

function describe(spec: CommandSpec): string {
  return `${cmdName(spec.type)} [${spec.offset}, +${spec.length})`;
}

export class NbdConnection {
  private nextCookie = 1n;
  private readonly inflight = new Map<bigint, Pending>();
  private readonly queue: Pending[] = [];
  private waitingDrain = false;
  private state: State = "open";
  private closedError: Error | undefined;
  private lastSocketError: Error | undefined;
  private readonly decoder: ReplyDecoder;
  private idleWaiters: (() => void)[] = [];
  private readonly closeWaiters: (() => void)[] = [];
  private readonly failListeners: ((e: Error) => void)[] = [];
  private socketClosed = false;

  constructor(
    private readonly socket: Socket,
    private readonly info: ConnectionInfo,
    leftover: Buffer,
  ) {
    // The sink methods stay private: they are the decoder's, not the connection's API.
    const sink: ReplySink = {
      simpleReply: (error, cookie) => this.simpleReply(error, cookie),
      simpleReplyDone: (error, cookie, data) => this.simpleReplyDone(error, cookie, data),
      offsetData: (flags, cookie, offset, length) => this.offsetData(cookie, offset, length),
      offsetDataDone: (flags, cookie) => this.offsetDataDone(flags, cookie),
      chunk: (flags, type, cookie, payload) => this.chunk(flags, type, cookie, payload),
    };
    this.decoder = new ReplyDecoder(sink);
    socket.on("error", (e: Error) => {
      this.lastSocketError = e;
    });
    socket.on("close", () => {
      this.socketClosed = true;
      this.fail(this.closedByServer());
      for (const w of this.closeWaiters.splice(0)) w();
    });
    // Bytes past the handshake first, then whatever the input held or receives next.
    const input = SocketInput.of(socket);
    queueMicrotask(() => {
      if (leftover.length > 0) this.onData(leftover);
      input.attach({
        push: (chunk) => this.onData(chunk),
        directTarget: () => (this.state === "closed" ? undefined : this.decoder.directTarget(DIRECT_READ_MIN)),
        pushedDirect: (target, n) => this.received(() => this.decoder.pushedDirect(target, n)),
      });
    });
  }

  /**
   * The error for a closed socket. A stream cut inside a reply is still a closed
   * connection (CONNECTION_CLOSED, which callers may retry), with the truncation
   * as its cause.
   */
  private closedByServer(): ConnectionClosedError {
    let cause: unknown = this.lastSocketError;
    try {
      this.decoder.end();
    } catch (e: unknown) {
      cause ??= e;
    }
    const detail = cause instanceof Error ? `: ${cause.message}` : "";
    return new ConnectionClosedError(`NBD server closed the connection${detail}`, { cause });
  }

  /** Requests sent and not yet answered (including cancelled ones), plus queued ones. */
  get load(): number {
    return this.inflight.size + this.queue.length;
  }

  get isOpen(): boolean {
    return this.state === "open";
  }

  /** Why the connection is no longer usable, if it is not. */
  get error(): Error | undefined {
    return this.closedError;
  }

  submit(spec: CommandSpec): Promise<CommandOutcome> {
    if (this.state !== "open") return Promise.reject(this.closedError ?? new ConnectionClosedError("NBD connection is closing"));
    if (spec.signal?.aborted === true) return Promise.reject(new CancelledError(`${describe(spec)} cancelled before it was sent`));
    return new Promise<CommandOutcome>((resolve, reject) => {
      const p: Pending = {
        cookie: this.nextCookie++,
        spec,
        cancelled: false,
        error: undefined,
        read: undefined,
        status: undefined,
        resolve,
        reject,
        unlisten: () => undefined,
      };
      const signal = spec.signal;
      if (signal !== undefined) {
        const onAbort = (): void => this.cancel(p);
        signal.addEventListener("abort", onAbort, { once: true });
        p.unlisten = () => signal.removeEventListener("abort", onAbort);
      }
      this.queue.push(p);
      this.pump();
    });
  }

  private closing: Promise<void> | undefined;

  /** Wait for every request to settle, send NBD_CMD_DISC and end the socket. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    if (this.state === "open") {
      this.state = "closing";
      while (this.load > 0 && this.state === "closing") {
        await new Promise<void>((r) => this.idleWaiters.push(r));
      }
    }
    if (this.state === "closing") {
      this.state = "closed";
      this.closedError = new ConnectionClosedError("NBD connection was closed by the client");
      const disc = encodeRequestHeader({ flags: 0, type: NBD_CMD_DISC, cookie: this.nextCookie++, offset: 0, length: 0 });
      this.socket.end(disc);
    }
    if (!this.socketClosed) {
      const timer = setTimeout(() => this.socket.destroy(), 5_000);
      await new Promise<void>((r) => this.closeWaiters.push(r));
      clearTimeout(timer);
    }
  }

  /** Destroy the connection, rejecting everything pending with `e`. */
  fail(e: Error): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.closedError = e;
    this.socket.destroy();
    for (const p of [...this.queue, ...this.inflight.values()]) {
      p.unlisten();
      if (!p.cancelled) p.reject(e);
    }
    this.queue.length = 0;
    this.inflight.clear();
    this.wakeIdle();
    for (const f of this.failListeners.splice(0)) f(e);
  }

  /**
   * Calls `f` once when the open connection breaks (the server closed it, a protocol
   * error, `fail`). Nothing is called for a connection that is already closed, so
   * check `isOpen` after registering; a clean `close()` calls nothing either.
   */
  onFail(f: (e: Error) => void): void {
    if (this.state !== "closed") this.failListeners.push(f);
  }

  private cancel(p: Pending): void {
    if (p.cancelled || this.state === "closed") return;
    const qi = this.queue.indexOf(p);
    if (qi >= 0) {
      this.queue.splice(qi, 1);
      p.unlisten();
      p.reject(new CancelledError(`${describe(p.spec)} cancelled before it was sent`));
      this.wakeIdle();
      return;
    }
    if (!this.inflight.has(p.cookie)) return;
    p.cancelled = true;
    p.unlisten();
    p.reject(new CancelledError(`${describe(p.spec)} cancelled; its late reply will be discarded`));
  }

  private pump(): void {
    while (!this.waitingDrain && this.state !== "closed" && this.queue.length > 0 && this.inflight.size < this.info.maxInFlight) {
      const p = this.queue.shift();
      if (p === undefined) break;
      this.inflight.set(p.cookie, p);
      const { spec } = p;
      if (spec.type === NBD_CMD_READ && this.info.structuredReplies) {
        p.read = new ReadAssembler(spec.offset, spec.length, (spec.flags & NBD_CMD_FLAG_DF) !== 0);
      }
      if (spec.type === NBD_CMD_BLOCK_STATUS) p.status = new Map();
      let ok: boolean;
      const header = Buffer.allocUnsafe(NBD_HEADER_REQUEST + (spec.payload !== undefined && spec.payload.length <= 64 * 1024 ? spec.payload.length : 0));
      encodeRequestHeader({ flags: spec.flags, type: spec.type, cookie: p.cookie, offset: spec.offset, length: spec.length }, header);
      if (spec.payload !== undefined && header.length === NBD_HEADER_REQUEST) {
        // Large payload: header and data go out as one corked write, without a copy.
        this.socket.cork();
        this.socket.write(header);
        ok = this.socket.write(spec.payload);
        this.socket.uncork();
      } else {
        if (spec.payload !== undefined) spec.payload.copy(header, NBD_HEADER_REQUEST);
        ok = this.socket.write(header);
      }
      if (!ok) {
        this.waitingDrain = true;
        void this.awaitDrain();
      }
    }
  }

  private async awaitDrain(): Promise<void> {
    let onDrain: (() => void) | undefined;
    let onClose: (() => void) | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        onDrain = resolve;
        onClose = () => reject(new ConnectionClosedError("NBD connection closed while waiting to send"));
        this.socket.once("drain", onDrain);
        this.socket.once("close", onClose);
      });
      this.waitingDrain = false;
      this.pump();
    } catch {
      // The 'close' handler rejects everything pending.
    } finally {
      if (onDrain !== undefined) this.socket.off("drain", onDrain);
      if (onClose !== undefined) this.socket.off("close", onClose);
    }
  }

  private onData(chunk: Buffer): void {
    this.received(() => this.decoder.push(chunk));
  }

  /** Run one decoder step; any error it throws is fatal to the connection. */
  private received(step: () => void): void {
    if (this.state === "closed") return;
    try {
      step();
    } catch (e: unknown) {
      this.fail(e instanceof NbdProtocolError ? e : new NbdProtocolError(`failed to process a reply: ${errorMessage(e)}`));
    }
  }

  // ---- ReplySink: called by the decoder, in stream order ---------------------

  private inFlight(cookie: bigint): Pending {
    const p = this.inflight.get(cookie);
    if (p === undefined) throw new NbdProtocolError(`reply for unknown cookie ${cookie}`);
    return p;
  }

  private simpleReply(error: number, cookie: bigint): Buffer | undefined {
    const p = this.inFlight(cookie);
    const { spec } = p;
    if (error !== 0) return undefined;
    if (spec.type === NBD_CMD_READ) {
      if (this.info.structuredReplies) throw new NbdProtocolError(`simple reply to ${describe(spec)} although structured replies were negotiated`);
      // Uninitialised is safe: the decoder fills all of it before simpleReplyDone,
      // the only place it is handed on; a cut stream fails the READ instead.
      return Buffer.allocUnsafe(spec.length);
    }
    if (spec.type === NBD_CMD_BLOCK_STATUS) throw new NbdProtocolError(`simple success reply to ${describe(spec)}: block status needs structured replies`);
    return undefined;
  }

  private simpleReplyDone(error: number, cookie: bigint, data: Buffer | undefined): void {
    const p = this.inFlight(cookie);
    if (error !== 0) {
      const errno = errnoFromWire(error);
      p.error ??= new NbdCommandError(`${describe(p.spec)} failed: ${errno}`, errno);
    }
    this.complete(p, data);
  }

  private offsetData(cookie: bigint, offset: number, length: number): Buffer {
    return this.readOf(this.inFlight(cookie), "OFFSET_DATA").dataTarget(offset, length);
  }

  private offsetDataDone(flags: number, cookie: bigint): void {
    const p = this.inFlight(cookie);
    this.readOf(p, "OFFSET_DATA").filled();
    if ((flags & NBD_REPLY_FLAG_DONE) !== 0) this.complete(p, undefined);
  }

  private chunk(flags: number, t: number, cookie: bigint, payload: Buffer): void {
    const p = this.inFlight(cookie);
    if (!this.info.structuredReplies) throw new NbdProtocolError("structured reply chunk although structured replies were not negotiated");
    const { spec } = p;
    const done = (flags & NBD_REPLY_FLAG_DONE) !== 0;
    if (NBD_REPLY_TYPE_IS_ERR(t)) {
      const e = decodeErrorChunk(t, payload);
      if (e.error === 0) throw new NbdProtocolError(`error chunk with error 0 for ${describe(spec)}`);
      if (t === NBD_REPLY_TYPE_ERROR_OFFSET && e.offset !== undefined && (e.offset < spec.offset || e.offset >= spec.offset + spec.length)) {
        throw new NbdProtocolError(`ERROR_OFFSET ${e.offset} outside ${describe(spec)}`);
      }
      const errno = errnoFromWire(e.error);
      const at = e.offset !== undefined ? ` at offset ${e.offset}` : "";
      p.error ??= new NbdCommandError(`${describe(spec)} failed${at}: ${errno}${e.message !== "" ? `: ${e.message}` : ""}`, errno);
    } else if (t === NBD_REPLY_TYPE_NONE) {
      if (!done || payload.length !== 0) throw new NbdProtocolError(`NBD_REPLY_TYPE_NONE without DONE or with a payload for ${describe(spec)}`);
    } else if (t === NBD_REPLY_TYPE_OFFSET_HOLE) {
      const h = decodeOffsetHole(payload);
      this.readOf(p, "OFFSET_HOLE").hole(h.offset, h.length);
    } else if (t === NBD_REPLY_TYPE_BLOCK_STATUS) {
      const status = p.status;
      if (status === undefined) throw new NbdProtocolError(`chunk type BLOCK_STATUS not allowed for ${describe(spec)}`);
      const bs = decodeBlockStatus(payload);
      if (!this.info.contextIds.has(bs.contextId)) throw new NbdProtocolError(`BLOCK_STATUS for meta context id ${bs.contextId}, which was not negotiated`);
      if (status.has(bs.contextId)) throw new NbdProtocolError(`two BLOCK_STATUS chunks for meta context id ${bs.contextId}`);
      if ((spec.flags & NBD_CMD_FLAG_REQ_ONE) !== 0 && bs.extents.length !== 1) {
        throw new NbdProtocolError(`${bs.extents.length} extents in reply to BLOCK_STATUS with REQ_ONE`);
      }
      if (bs.extents.some((x) => x.length === 0)) throw new NbdProtocolError("zero-length extent in BLOCK_STATUS reply");
      status.set(bs.contextId, bs.extents);
    } else {
      // OFFSET_DATA never gets here: the decoder streams it through offsetData.
      throw new NbdProtocolError(`unknown structured reply chunk type ${t} for ${describe(spec)}`);
    }
    if (done) this.complete(p, undefined);
  }

  /** The READ reassembly a data or hole chunk belongs to; refuses the chunk for any other command. */
  private readOf(p: Pending, what: string): ReadAssembler {
    if (!this.info.structuredReplies) throw new NbdProtocolError("structured reply chunk although structured replies were not negotiated");
    if (p.read === undefined) throw new NbdProtocolError(`chunk type ${what} not allowed for ${describe(p.spec)}`);
    return p.read;
  }

  private complete(p: Pending, data: Buffer | undefined): void {
    // Validate first, while p is still in flight: a protocol error here rejects it with the rest.
    let outcome: CommandOutcome;
    if (p.error !== undefined) outcome = {};
    else if (p.read !== undefined) outcome = { data: p.read.finish() };
    else if (p.status !== undefined) {
      const status = p.status;
      const missing = [...this.info.contextIds].filter((id) => !status.has(id));
      if (missing.length > 0) throw new NbdProtocolError(`BLOCK_STATUS reply without extents for meta context id(s) ${missing.join(", ")}`);
      outcome = { status };
    } else if (data !== undefined) outcome = { data };
    else if (p.spec.type === NBD_CMD_READ) outcome = { data: Buffer.alloc(0) };
    else outcome = {};
    this.inflight.delete(p.cookie);
    if (!p.cancelled) {
      p.unlisten();
      if (p.error !== undefined) p.reject(p.error);
      else p.resolve(outcome);
    }
    this.pump();
    this.wakeIdle();
  }

  private wakeIdle(): void {
    if (this.load === 0 || this.state === "closed") for (const w of this.idleWaiters.splice(0)) w();
  }
}
