/**
 * The client side of the fixed-newstyle handshake (proto.md "Newstyle negotiation"),
 * written as straight-line async code over exact reads:
 *
 *   greeting ─▶ client flags ─▶ [STARTTLS ─▶ TLS-PSK] ─▶ [STRUCTURED_REPLY]
 *            ─▶ [SET_META_CONTEXT] ─▶ GO (INFO_NAME/DESCRIPTION/BLOCK_SIZE)
 *                                      └─ ERR_UNSUP ─▶ EXPORT_NAME (old servers)
 *
 * Each option's error reply becomes an NbdNegotiationError naming the option, the
 * NBD_REP_ERR_* reply and the server's message. Malformed replies are protocol
 * errors. Whoever calls this destroys the socket on failure.
 *
 * Bytes are read through the socket's SocketInput (client-socket-input.ts). At
 * STARTTLS the raw socket's input is released, with nothing left unread, and the
 * TLS socket's 'data' events carry the stream from then on.
 */
import type { Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from "node:tls";
import { ConnectionClosedError, NbdNegotiationError, NbdProtocolError } from "../errors.js";
import {
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_NAME,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_LIST,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_BLOCK_SIZE_REQD,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_PLATFORM,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_SHUTDOWN,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_FLAG_ERROR,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  OPT_NAMES,
} from "./constants.js";
import {
  decodeExportNameReply,
  decodeGreeting,
  decodeInfoItem,
  decodeMetaContextReply,
  decodeOptionReplyHeader,
  decodeServerReply,
  encodeClientFlags,
  encodeInfoRequest,
  encodeMetaContextRequest,
  encodeOption,
  GREETING_LENGTH,
  OPTION_REPLY_HEADER_LENGTH,
} from "./handshake-codec.js";
import { SocketInput } from "./client-socket-input.js";
import { SocketReader } from "./socket-reader.js";

const REP_ERR_NAMES: Readonly<Record<number, string>> = {
  [NBD_REP_ERR_UNSUP]: "NBD_REP_ERR_UNSUP",
  [NBD_REP_ERR_POLICY]: "NBD_REP_ERR_POLICY",
  [NBD_REP_ERR_INVALID]: "NBD_REP_ERR_INVALID",
  [NBD_REP_ERR_PLATFORM]: "NBD_REP_ERR_PLATFORM",
  [NBD_REP_ERR_TLS_REQD]: "NBD_REP_ERR_TLS_REQD",
  [NBD_REP_ERR_UNKNOWN]: "NBD_REP_ERR_UNKNOWN",
  [NBD_REP_ERR_SHUTDOWN]: "NBD_REP_ERR_SHUTDOWN",
  [NBD_REP_ERR_BLOCK_SIZE_REQD]: "NBD_REP_ERR_BLOCK_SIZE_REQD",
  [NBD_REP_ERR_TOO_BIG]: "NBD_REP_ERR_TOO_BIG",
};

export function repErrName(type: number): string {
  return REP_ERR_NAMES[type] ?? `NBD_REP_ERR 0x${type.toString(16)}`;
}

/** Option replies are small; anything bigger is a broken server. */
const MAX_OPTION_REPLY = 1024 * 1024;

export interface HandshakeRequest {
  exportName: string;
  /** TLS options (PSK) when STARTTLS must be negotiated; the connection fails without TLS. */
  tls?: ConnectionOptions;
  structuredReplies: boolean;
  metaContexts: readonly string[];
}

export interface NegotiatedExport {
  /** The socket to use from now on (a TLSSocket after STARTTLS). */
  socket: Socket;
  /** Bytes received past the end of the handshake (normally none). */
  leftover: Buffer;
  size: number;
  transmissionFlags: number;
  structuredReplies: boolean;
  metaContexts: Map<string, number>;
  blockSize?: { minimum: number; preferred: number; maximum: number };
  name?: string;
  description?: string;
}

interface OptionReply {
  type: number;
  data: Buffer;
}

/** One handshake conversation. `abort(e)` fails the pending read (timeouts, AbortSignal). */
export class ClientHandshake {
  private reader: SocketReader;
  private noZeroes = false;

  constructor(private socket: Socket) {
    this.reader = new SocketReader(socket);
  }

  abort(e: Error): void {
    this.reader.fail(e);
    this.socket.destroy();
  }

  async negotiate(req: HandshakeRequest): Promise<NegotiatedExport> {
    await this.greet();
    if (req.tls !== undefined) await this.startTls(req.tls);

    let structuredReplies = false;
    if (req.structuredReplies) {
      const r = await this.simpleOption(NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
      if (r.type === NBD_REP_ACK) structuredReplies = true;
      else if (r.type !== NBD_REP_ERR_UNSUP) throw this.optionError(NBD_OPT_STRUCTURED_REPLY, r);
    }

    const metaContexts = new Map<string, number>();
    if (req.metaContexts.length > 0) {
      if (!structuredReplies) {
        throw new NbdNegotiationError(`meta contexts (${req.metaContexts.join(", ")}) need structured replies, which ${req.structuredReplies ? "the server refused" : "were disabled"}`);
      }
      this.send(NBD_OPT_SET_META_CONTEXT, encodeMetaContextRequest({ exportName: req.exportName, queries: [...req.metaContexts] }));
      for (;;) {
        const r = await this.readReply(NBD_OPT_SET_META_CONTEXT);
        if (r.type === NBD_REP_ACK) break;
        if (r.type === NBD_REP_META_CONTEXT) {
          const { id, name } = decodeMetaContextReply(r.data);
          metaContexts.set(name, id);
          continue;
        }
        if ((r.type & NBD_REP_FLAG_ERROR) !== 0) throw this.optionError(NBD_OPT_SET_META_CONTEXT, r, req.exportName);
        throw new NbdProtocolError(`unexpected reply type ${r.type} to NBD_OPT_SET_META_CONTEXT`);
      }
      const missing = req.metaContexts.filter((c) => !metaContexts.has(c));
      if (missing.length > 0) {
        throw new NbdNegotiationError(
          `server did not grant meta context${missing.length > 1 ? "s" : ""} ${missing.map((c) => `'${c}'`).join(", ")} on export '${req.exportName}'` +
            ` (granted: ${[...metaContexts.keys()].join(", ") || "none"})`,
        );
      }
    }

    const go = await this.go(req.exportName);
    const leftover = this.reader.detach();
    return { socket: this.socket, leftover, structuredReplies, metaContexts, ...go };
  }

  async list(tls: ConnectionOptions | undefined): Promise<{ name: string; description: string }[]> {
    await this.greet();
    if (tls !== undefined) await this.startTls(tls);
    this.send(NBD_OPT_LIST, Buffer.alloc(0));
    const out: { name: string; description: string }[] = [];
    for (;;) {
      const r = await this.readReply(NBD_OPT_LIST);
      if (r.type === NBD_REP_ACK) break;
      if (r.type === NBD_REP_SERVER) out.push(decodeServerReply(r.data));
      else if ((r.type & NBD_REP_FLAG_ERROR) !== 0) throw this.optionError(NBD_OPT_LIST, r);
      else throw new NbdProtocolError(`unexpected reply type ${r.type} to NBD_OPT_LIST`);
    }
    // Polite goodbye; the server may answer ABORT with an ACK we do not wait for.
    this.send(NBD_OPT_ABORT, Buffer.alloc(0));
    this.reader.detach();
    this.socket.on("error", () => undefined);
    this.socket.end();
    return out;
  }

  private async greet(): Promise<void> {
    const { handshakeFlags } = decodeGreeting(await this.reader.read(GREETING_LENGTH));
    if ((handshakeFlags & NBD_FLAG_FIXED_NEWSTYLE) === 0) {
      throw new NbdNegotiationError("server does not offer fixed-newstyle negotiation");
    }
    this.noZeroes = (handshakeFlags & NBD_FLAG_NO_ZEROES) !== 0;
    this.socket.write(encodeClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | (this.noZeroes ? NBD_FLAG_C_NO_ZEROES : 0)));
  }

  private async startTls(options: ConnectionOptions): Promise<void> {
    const r = await this.simpleOption(NBD_OPT_STARTTLS, Buffer.alloc(0));
    if (r.type !== NBD_REP_ACK) {
      const e = this.optionError(NBD_OPT_STARTTLS, r);
      throw new NbdNegotiationError(`server refused TLS, which this connection requires: ${e.message}`, r.type);
    }
    const raw = this.socket;
    // The TLS socket takes the raw stream over; the raw socket's input must stop
    // here, with nothing unread (the first TLS bytes must not have come yet).
    const rawInput = SocketInput.of(raw);
    if (rawInput.kind === "user-buffer") throw new Error("STARTTLS needs a socket read through 'data' events, not onread (client.ts opens it so)");
    const early = this.reader.detach().length + rawInput.release().length;
    if (early > 0) throw new NbdProtocolError(`server sent ${early} bytes after accepting STARTTLS`);
    // From here the TLSSocket reports failures; keep a stray raw-socket error from crashing us.
    raw.on("error", () => undefined);
    const secure: TLSSocket = tlsConnect({ ...options, socket: raw });
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => {
        cleanup();
        reject(new NbdNegotiationError(`TLS-PSK handshake failed (wrong key or identity?): ${e.message}`));
      };
      const onClose = (): void => {
        cleanup();
        reject(new NbdNegotiationError("server closed the connection during the TLS-PSK handshake (wrong key or identity?)"));
      };
      const onSecure = (): void => {
        cleanup();
        resolve();
      };
      const cleanup = (): void => {
        secure.off("error", onError);
        secure.off("close", onClose);
        secure.off("secureConnect", onSecure);
      };
      secure.on("error", onError);
      secure.on("close", onClose);
      secure.on("secureConnect", onSecure);
    }).catch((e: unknown) => {
      secure.destroy();
      throw e;
    });
    this.socket = secure;
    this.reader = new SocketReader(secure);
  }

  private async go(exportName: string): Promise<Omit<NegotiatedExport, "socket" | "leftover" | "structuredReplies" | "metaContexts">> {
    this.send(NBD_OPT_GO, encodeInfoRequest({ name: exportName, infos: [NBD_INFO_NAME, NBD_INFO_DESCRIPTION, NBD_INFO_BLOCK_SIZE] }));
    let size: number | undefined;
    let transmissionFlags = 0;
    const extra: { blockSize?: { minimum: number; preferred: number; maximum: number }; name?: string; description?: string } = {};
    for (;;) {
      const r = await this.readReply(NBD_OPT_GO);
      if (r.type === NBD_REP_ACK) break;
      if (r.type === NBD_REP_INFO) {
        const item = decodeInfoItem(r.data);
        if ("size" in item) {
          size = item.size;
          transmissionFlags = item.flags;
        } else if ("name" in item) extra.name = item.name;
        else if ("description" in item) extra.description = item.description;
        else if ("minimum" in item) {
          const { minimum, preferred, maximum } = item;
          extra.blockSize = { minimum, preferred, maximum };
        }
        continue;
      }
      if (r.type === NBD_REP_ERR_UNSUP) return this.exportNameFallback(exportName);
      if ((r.type & NBD_REP_FLAG_ERROR) !== 0) throw this.optionError(NBD_OPT_GO, r, exportName);
      throw new NbdProtocolError(`unexpected reply type ${r.type} to NBD_OPT_GO`);
    }
    if (size === undefined) throw new NbdProtocolError("server acknowledged NBD_OPT_GO without sending NBD_INFO_EXPORT");
    return { size, transmissionFlags, ...extra };
  }

  private async exportNameFallback(exportName: string): Promise<{ size: number; transmissionFlags: number }> {
    this.send(NBD_OPT_EXPORT_NAME, Buffer.from(exportName, "utf8"));
    let b: Buffer;
    try {
      b = await this.reader.read(this.noZeroes ? 10 : 134);
    } catch (e: unknown) {
      if (e instanceof ConnectionClosedError) {
        throw new NbdNegotiationError(`server closed the connection on NBD_OPT_EXPORT_NAME: export '${exportName}' does not exist or is refused`);
      }
      throw e;
    }
    const { size, flags } = decodeExportNameReply(b);
    return { size, transmissionFlags: flags };
  }

  private send(option: number, data: Buffer): void {
    this.socket.write(encodeOption(option, data));
  }

  private async simpleOption(option: number, data: Buffer): Promise<OptionReply> {
    this.send(option, data);
    return this.readReply(option);
  }

  private async readReply(option: number): Promise<OptionReply> {
    const h = decodeOptionReplyHeader(await this.reader.read(OPTION_REPLY_HEADER_LENGTH));
    if (h.option !== option) {
      throw new NbdProtocolError(`reply for option ${OPT_NAMES[h.option] ?? h.option} while waiting for NBD_OPT_${OPT_NAMES[option] ?? option}`);
    }
    if (h.length > MAX_OPTION_REPLY) throw new NbdProtocolError(`option reply of ${h.length} bytes`);
    const data = h.length > 0 ? Buffer.from(await this.reader.read(h.length)) : Buffer.alloc(0);
    return { type: h.type, data };
  }

  private optionError(option: number, r: OptionReply, exportName?: string): NbdNegotiationError {
    const name = repErrName(r.type);
    const msg = r.data.toString("utf8").trim();
    const tail = msg === "" ? "" : `: ${msg}`;
    const opt = `NBD_OPT_${OPT_NAMES[option] ?? option}`;
    let what: string;
    if (r.type === NBD_REP_ERR_UNKNOWN && exportName !== undefined) what = `export '${exportName}' not found`;
    else if (r.type === NBD_REP_ERR_TLS_REQD) what = `server requires TLS (use an nbds:// URI or a psk file) for ${opt}`;
    else if (r.type === NBD_REP_ERR_POLICY) what = `${opt} refused by server policy`;
    else what = `${opt} failed`;
    return new NbdNegotiationError(`${what} (${name})${tail}`, r.type);
  }
}
