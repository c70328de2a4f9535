/**
 * One NBD server connection: greeting → option haggling → (optional STARTTLS)
 * → transmission → close. State moves only through `transition(from[], to)`,
 * which refuses illegal moves and logs each one, so a connection's life reads
 * straight from the debug log.
 *
 * Invariants:
 *  - A protocol violation (bad magic, malformed option, TLS misuse) destroys this
 *    connection only; a failed command replies an errno and the connection lives.
 *  - Options are handled strictly one at a time, in arrival order.
 *  - Requests run concurrently and reply out of order, bounded by `maxInFlight`
 *    requests and `maxInFlightBytes` of payload; past either bound, or while the
 *    socket's write buffer needs draining, reading pauses (backpressure).
 *  - NBD_CMD_DISC stops reading; the socket closes once in-flight replies are sent.
 */
import type { Socket } from "node:net";
import { TLSSocket, createSecureContext, type TLSSocketOptions } from "node:tls";
import { NbdProtocolError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { ExportProvider, NbdBackend, SessionInfo } from "./backend.js";
import { CMD_NAMES, NBD_CMD_DISC, NBD_CMD_READ, NBD_CMD_WRITE, NBD_FLAG_C_NO_ZEROES, NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_NO_ZEROES } from "./constants.js";
import { ServerFrameDecoder, type ServerFrame } from "./frame-decoder.js";
import { encodeGreeting } from "./handshake-codec.js";
import { validateRequest } from "./request-validation.js";
import { errorReply, executeCommand, type CommandContext, type Reply } from "./server-commands.js";
import { handleOption, type NegotiationState, type OptionContext, type TlsMode } from "./server-options.js";
import { BufferPool } from "./buffer-pool.js";
import { attachUserBuffer } from "./socket-user-buffer.js";
import { serverTlsOptions, type PskTable } from "./tls-psk.js";

export interface ConnectionConfig {
  provider: ExportProvider;
  tlsMode: TlsMode;
  psk: PskTable | undefined;
  maxInFlight: number;
  maxInFlightBytes: number;
  handshakeTimeoutMs: number;
  log: Logger;
}

type State = "handshake" | "tls-upgrade" | "transmission" | "draining" | "closed";

export class ServerConnection {
  private state: State = "handshake";
  private socket: Socket;
  private readonly pool = new BufferPool();
  private decoder = new ServerFrameDecoder("client-flags", undefined, undefined, this.pool);
  private readonly optionQueue: ServerFrame[] = [];
  private optionBusy = false;
  private tlsIdentity: string | undefined;
  private noZeroes = false;
  private readonly negotiation: NegotiationState = { structuredReplies: false, metaExport: undefined, metaSelected: [] };
  private cmd: CommandContext | undefined;
  private inFlight = 0;
  private inFlightBytes = 0;
  private writeBlocked = false;
  private paused = false;
  private handshakeTimer: NodeJS.Timeout | undefined;
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;

  constructor(
    socket: Socket,
    private readonly cfg: ConnectionConfig,
    private readonly peer: string,
  ) {
    this.socket = socket;
    this.closed = new Promise((r) => (this.resolveClosed = r));
    // At STARTTLS, node's TLS wrap pushes its own stream listener over the handle,
    // so the user buffer serves only the plaintext phase (tested in 150-server-tls).
    this.attach(socket, true);
    socket.resume();
    this.handshakeTimer = setTimeout(() => this.abort(`no export chosen within ${cfg.handshakeTimeoutMs} ms`), cfg.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    socket.setNoDelay(true);
    socket.write(encodeGreeting(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES));
  }

  get exportName(): string | undefined {
    return this.negotiation.metaExport;
  }

  /** Stop taking new requests; close once in-flight ones have replied. */
  drain(): void {
    if (this.state === "transmission") {
      this.transition(["transmission"], "draining");
      this.maybeFinish();
    } else if (this.state !== "closed" && this.state !== "draining") {
      this.abort("server shutting down");
    }
  }

  private get session(): SessionInfo {
    return { tlsIdentity: this.tlsIdentity, peer: this.peer };
  }

  private transition(from: State[], to: State): void {
    if (!from.includes(this.state)) throw new Error(`illegal NBD connection transition ${this.state} → ${to}`);
    this.cfg.log.debug(`${this.peer}: ${this.state} → ${to}`);
    this.state = to;
  }

  /** `userBuffer`: read into one reused buffer (see socket-user-buffer.ts) instead of a new one per read. */
  private attach(socket: Socket, userBuffer = false): void {
    if (!(userBuffer && attachUserBuffer(socket, Buffer.allocUnsafe(256 * 1024), (view) => this.onData(view, true)))) {
      socket.on("data", (chunk: Buffer) => this.onData(chunk));
    }
    socket.on("drain", () => {
      this.writeBlocked = false;
      this.updateFlow();
    });
    socket.on("error", (e) => this.cfg.log.debug(`${this.peer}: socket error: ${e.message}`));
    socket.on("close", () => this.onClose());
  }

  private onData(chunk: Buffer, transient = false): void {
    if (this.state === "closed" || this.state === "tls-upgrade") return;
    let frames: ServerFrame[];
    try {
      frames = this.decoder.push(chunk, transient);
    } catch (e: unknown) {
      this.abort(errorMessage(e));
      return;
    }
    for (const f of frames) {
      if (this.state === "handshake") {
        this.optionQueue.push(f);
      } else if (this.state === "transmission" && f.kind === "request") {
        this.dispatch(f);
      } else if (this.state === "draining" && f.kind === "request") {
        this.refuseWhileDraining(f);
      }
    }
    if (this.state === "handshake") void this.pumpOptions();
  }

  private async pumpOptions(): Promise<void> {
    if (this.optionBusy) return;
    this.optionBusy = true;
    try {
      while (this.state === "handshake") {
        const f = this.optionQueue.shift();
        if (f === undefined) break;
        await this.handleHandshakeFrame(f);
      }
    } catch (e: unknown) {
      this.abort(errorMessage(e));
    } finally {
      this.optionBusy = false;
    }
  }

  private async handleHandshakeFrame(f: ServerFrame): Promise<void> {
    if (f.kind === "client-flags") {
      if ((f.flags & ~3) !== 0) throw new NbdProtocolError(`unknown client flags 0x${f.flags.toString(16)}`);
      this.noZeroes = (f.flags & NBD_FLAG_C_NO_ZEROES) !== 0;
      return;
    }
    if (f.kind !== "option") throw new NbdProtocolError("request sent before an export was chosen");
    const ctx: OptionContext = {
      provider: this.cfg.provider,
      tlsMode: this.cfg.tlsMode,
      tlsActive: this.tlsIdentity !== undefined,
      session: this.session,
      noZeroes: this.noZeroes,
      state: this.negotiation,
      send: (buf) => {
        if (this.state !== "closed") this.socket.write(buf);
      },
    };
    const outcome = await handleOption(ctx, f.option, f.data);
    switch (outcome.next) {
      case "continue":
        // A refused GO leaves the decoder waiting; frame the options queued behind it.
        this.decoder.resumeOptions();
        this.onData(Buffer.alloc(0));
        return;
      case "close":
        this.cfg.log.debug(`${this.peer}: closing: ${outcome.reason}`);
        this.end();
        return;
      case "starttls":
        this.startTls();
        return;
      case "transmission":
        this.enterTransmission(outcome.backend, outcome.exportName, outcome.contexts);
        return;
    }
  }

  private startTls(): void {
    const psk = this.cfg.psk;
    if (psk === undefined) throw new NbdProtocolError("STARTTLS accepted without a psk table");
    if (this.decoder.buffered > 0 || this.optionQueue.length > 0) {
      throw new NbdProtocolError("client sent data after NBD_OPT_STARTTLS before the TLS handshake");
    }
    this.transition(["handshake"], "tls-upgrade");
    const raw = this.socket;
    raw.removeAllListeners("data");
    raw.removeAllListeners("drain");
    raw.removeAllListeners("close");
    raw.on("close", () => this.onClose());
    let identity: string | undefined;
    const base = serverTlsOptions(psk);
    // TLSSocket honours pskCallback at runtime (node _tls_wrap), though its option type omits it.
    const options: TLSSocketOptions & { pskCallback: (s: TLSSocket, id: string) => Buffer | null } = {
      isServer: true,
      secureContext: createSecureContext(base),
      pskCallback: (_s, id) => {
        const key = psk.get(id) ?? null;
        if (key !== null) identity = id;
        return key;
      },
    };
    const tls = new TLSSocket(raw, options);
    tls.once("secure", () => {
      this.tlsIdentity = identity ?? "";
      this.socket = tls;
      this.decoder = new ServerFrameDecoder("options", undefined, undefined, this.pool);
      this.transition(["tls-upgrade"], "handshake");
      this.attach(tls);
      this.cfg.log.debug(`${this.peer}: TLS up as "${this.tlsIdentity}"`);
    });
    tls.on("error", (e: Error) => this.abort(`TLS handshake failed: ${e.message}`));
  }

  private enterTransmission(backend: NbdBackend, exportName: string, contexts: string[]): void {
    this.transition(["handshake"], "transmission");
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.negotiation.metaExport = exportName;
    this.cmd = { backend, structuredReplies: this.negotiation.structuredReplies, contexts };
    this.decoder.enterTransmission();
    this.cfg.log.debug(`${this.peer}: export "${exportName}" contexts [${contexts.join(", ")}]`);
    // Requests pipelined right behind GO are already buffered in the decoder.
    this.onData(Buffer.alloc(0));
  }

  private dispatch(f: Extract<ServerFrame, { kind: "request" }>): void {
    const cmd = this.cmd;
    if (cmd === undefined) return;
    const h = f.header;
    if (h.type === NBD_CMD_DISC) {
      this.cfg.log.debug(`${this.peer}: NBD_CMD_DISC`);
      this.transition(["transmission"], "draining");
      this.maybeFinish();
      return;
    }
    const bytes = h.type === NBD_CMD_WRITE ? (f.payload?.length ?? 0) : h.type === NBD_CMD_READ ? h.length : 0;
    this.inFlight++;
    this.inFlightBytes += bytes;
    this.updateFlow();
    const invalid = validateRequest(h, {
      size: cmd.backend.size,
      caps: cmd.backend,
      structuredReplies: cmd.structuredReplies,
      metaContextCount: cmd.contexts.length,
    }, f.oversized === true);
    const work = invalid
      ? Promise.resolve(errorReply(cmd, h, invalid.errno, invalid.reason))
      : executeCommand(cmd, h, f.payload);
    if (invalid) this.cfg.log.debug(`${this.peer}: ${CMD_NAMES[h.type] ?? h.type} rejected: ${invalid.reason}`);
    void work.then((bufs) => {
      if (f.payload !== undefined) this.pool.release(f.payload);
      this.inFlight--;
      this.inFlightBytes -= bytes;
      this.sendReply(bufs);
      this.updateFlow();
      this.maybeFinish();
    });
  }

  /** After DISC or during shutdown, a request still gets an answer: ESHUTDOWN (proto.md "Error values"). */
  private refuseWhileDraining(f: Extract<ServerFrame, { kind: "request" }>): void {
    if (f.payload !== undefined) this.pool.release(f.payload);
    if (this.cmd === undefined || f.header.type === NBD_CMD_DISC) return;
    this.sendReply(errorReply(this.cmd, f.header, "ESHUTDOWN", "server is shutting down"));
  }

  private sendReply(bufs: Reply): void {
    if (this.state === "closed" || this.socket.destroyed) {
      bufs.onSent?.();
      return;
    }
    this.socket.cork();
    let ok = true;
    const last = bufs.length - 1;
    const onSent = bufs.onSent;
    bufs.forEach((b, i) => {
      ok = i === last && onSent ? this.socket.write(b, () => onSent()) : this.socket.write(b);
    });
    this.socket.uncork();
    if (!ok) this.writeBlocked = true;
  }

  private updateFlow(): void {
    const over = this.inFlight >= this.cfg.maxInFlight || this.inFlightBytes >= this.cfg.maxInFlightBytes || this.writeBlocked;
    if (over && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!over && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private maybeFinish(): void {
    if (this.state === "draining" && this.inFlight === 0) this.end();
  }

  private end(): void {
    if (this.state === "closed") return;
    // Once our side is flushed, release the socket: an idle peer may never read our
    // FIN, and net.Server.close() (graceful shutdown) would wait for it forever.
    const s = this.socket;
    s.end(() => s.destroy());
    this.onClose();
  }

  /** Protocol violation or fatal error: drop the connection now. */
  private abort(reason: string): void {
    if (this.state === "closed") return;
    this.cfg.log.warn(`${this.peer}: closing connection: ${reason}`);
    this.socket.destroy();
    this.onClose();
  }

  private onClose(): void {
    if (this.state === "closed") return;
    this.state = "closed";
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    const backend = this.cmd?.backend;
    this.cmd = undefined;
    const done = (): void => this.resolveClosed();
    if (backend?.close) {
      backend.close().then(done, (e: unknown) => {
        this.cfg.log.warn(`${this.peer}: backend close failed: ${errorMessage(e)}`);
        done();
      });
    } else {
      done();
    }
  }
}
