/**
 * Our NBD client: what the backup plugin and the hypervisor use to reach exports.
 *
 * Layers (one file each):
 *   uri.ts                 where to connect
 *   client-socket-input.ts where received bytes go (plain sockets: `onread`, one
 *                          reused buffer, READ data read in place)
 *   client-handshake.ts    fixed-newstyle negotiation, STARTTLS (PSK), GO/EXPORT_NAME
 *   client-connection.ts   pipelined transmission: cookies, queue, backpressure, errors
 *   client-reply-decoder   streaming reply decoding, READ data straight to its buffer
 *   client-read-assembler  READ chunk reassembly
 *   client.ts (here)       the typed API: validation before sending, splitting of
 *                          large requests, block status with absolute offsets
 *   client-pool.ts         several connections when the server allows multi-conn
 *
 * Checks made locally, before anything is sent: ranges must lie inside the export
 * (InvalidArgumentError); writes to a read-only export fail with EPERM; using a
 * feature the server did not advertise (FUA, TRIM, fast zero, …) fails with
 * ENOTSUP; both as NbdCommandError, exactly as if the server had refused.
 */
import { connect as netConnect, type Socket } from "node:net";
import type { ConnectionOptions } from "node:tls";
import { CancelledError, ConnectionClosedError, InvalidArgumentError, NbdCommandError, NbdProtocolError, TimeoutError, type Errno } from "../errors.js";
import type { Extent } from "../extents/extent.js";
import type { StatusExtent } from "./backend.js";
import { NbdConnection, type CommandOutcome } from "./client-connection.js";
import { ClientHandshake, type NegotiatedExport } from "./client-handshake.js";
import { SocketInput } from "./client-socket-input.js";
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_MAX_PAYLOAD,
} from "./constants.js";
import { clientTlsOptions, loadPskFile } from "./tls-psk.js";
import { formatNbdUri, toNbdUri, type NbdTransport, type NbdUri } from "./uri.js";


export interface ClientOptions {
  metaContexts?: string[];
  /** Default true. */
  structuredReplies?: boolean;
  /** Use TLS-PSK with this key file (also taken from the URI's tls-psk-file). */
  tlsPskFile?: string;
  /** PSK identity; default: the URI's username, else the first identity in the file. */
  tlsIdentity?: string;
  /** Aborts the connect and handshake. */
  signal?: AbortSignal;
  /** Connect + handshake deadline (default 30 s). */
  connectTimeoutMs?: number;
  /** Requests in flight on the connection at once (default 64). */
  maxInFlight?: number;
}

/** Block-status extents come back as the server's StatusExtent: absolute offsets, the context's state bits in `flag`. */
export type { StatusExtent };

export interface BlockSize {
  minimum: number;
  preferred: number;
  maximum: number;
}

/** TRIM, WRITE_ZEROES, CACHE and BLOCK_STATUS lengths are u32: split these at 1 GiB (aligned for any block size). */
const MAX_EFFECT_LENGTH = 1 << 30;

/**
 * Connect. A plain connection reads into one reused buffer (SocketInput's
 * `onread`); one that will switch to TLS keeps 'data' events, which is what
 * tls.connect can wrap.
 */
async function openSocket(t: NbdTransport, opts: ClientOptions, tls: boolean): Promise<Socket> {
  const addr = t.kind === "unix" ? { path: t.path } : { host: t.host, port: t.port };
  const socket = tls ? netConnect(addr) : SocketInput.connectWithUserBuffer(addr);
  const where = t.kind === "unix" ? t.path : `${t.host}:${t.port}`;
  const ms = opts.connectTimeoutMs ?? 30_000;
  const signal = opts.signal;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await new Promise<Socket>((resolve, reject) => {
      const fail = (e: Error): void => {
        socket.off("connect", onConnect);
        socket.destroy();
        reject(e);
      };
      const onError = (e: Error): void => fail(new ConnectionClosedError(`cannot connect to NBD server at ${where}: ${e.message}`, { cause: e }));
      const onConnect = (): void => {
        socket.off("error", onError);
        if (t.kind === "tcp") socket.setNoDelay(true);
        resolve(socket);
      };
      socket.once("error", onError);
      socket.once("connect", onConnect);
      timer = setTimeout(() => fail(new TimeoutError(`cannot connect to NBD server at ${where} within ${ms} ms`)), ms);
      onAbort = () => fail(new CancelledError("NBD connect cancelled"));
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) signal?.removeEventListener("abort", onAbort);
  }
}

async function tlsOptionsFor(u: NbdUri, opts: ClientOptions): Promise<ConnectionOptions | undefined> {
  const pskFile = opts.tlsPskFile ?? u.tlsPskFile;
  if (pskFile === undefined) {
    if (u.tls) throw new InvalidArgumentError(`${formatNbdUri(u)} requires TLS, but no TLS-PSK key file was given (tls-psk-file= or tlsPskFile); certificate TLS is not supported`);
    return undefined;
  }
  const identity = opts.tlsIdentity ?? u.tlsUsername;
  return clientTlsOptions(await loadPskFile(pskFile), identity);
}

/** Run a handshake step under the connect deadline and the caller's AbortSignal. */
async function withDeadline<T>(hs: ClientHandshake, opts: ClientOptions, run: () => Promise<T>): Promise<T> {
  const ms = opts.connectTimeoutMs ?? 30_000;
  const timer = setTimeout(() => hs.abort(new TimeoutError(`NBD handshake did not complete within ${ms} ms`)), ms);
  const onAbort = (): void => hs.abort(new CancelledError("NBD connect cancelled"));
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return await run();
  } catch (e: unknown) {
    hs.abort(e instanceof Error ? e : new Error(String(e)));
    throw e;
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
  }
}

function checkRange(what: string, offset: number, length: number, size: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidArgumentError(`${what}: offset ${offset} is not a non-negative integer`);
  if (!Number.isSafeInteger(length) || length < 0) throw new InvalidArgumentError(`${what}: length ${length} is not a non-negative integer`);
  if (offset + length > size) throw new InvalidArgumentError(`${what}: range [${offset}, +${length}) exceeds the export size ${size}`);
}

function unsupported(what: string): NbdCommandError {
  return new NbdCommandError(`${what} is not supported by this NBD export`, "ENOTSUP");
}

/** Split [offset, offset+length) into pieces of at most `max` bytes. */
function pieces(offset: number, length: number, max: number): Extent[] {
  const out: Extent[] = [];
  for (let at = 0; at < length; at += max) out.push({ offset: offset + at, length: Math.min(max, length - at) });
  return out;
}

export class NbdClient {
  readonly size: number;
  readonly transmissionFlags: number;
  readonly exportName: string;
  readonly description: string | undefined;
  readonly structuredReplies: boolean;
  readonly blockSize: BlockSize | undefined;
  readonly metaContexts: ReadonlyMap<string, number>;
  private readonly contextNames: ReadonlyMap<number, string>;
  private readonly maxPayload: number;

  private constructor(
    private readonly conn: NbdConnection,
    neg: NegotiatedExport,
    exportName: string,
  ) {
    this.size = neg.size;
    this.transmissionFlags = neg.transmissionFlags;
    this.exportName = neg.name ?? exportName;
    this.description = neg.description;
    this.structuredReplies = neg.structuredReplies;
    this.blockSize = neg.blockSize;
    this.metaContexts = neg.metaContexts;
    this.contextNames = new Map([...neg.metaContexts].map(([name, id]) => [id, name]));
    const max = neg.blockSize?.maximum ?? NBD_MAX_PAYLOAD;
    this.maxPayload = Math.max(1, Math.min(max, NBD_MAX_PAYLOAD));
  }

  static async connect(uri: string | NbdUri, opts: ClientOptions = {}): Promise<NbdClient> {
    const u = toNbdUri(uri);
    const tls = await tlsOptionsFor(u, opts);
    const maxInFlight = opts.maxInFlight ?? 64;
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1) throw new InvalidArgumentError(`maxInFlight must be a positive integer, got ${maxInFlight}`);
    if (opts.signal?.aborted === true) throw new CancelledError("NBD connect cancelled");
    const socket = await openSocket(u.transport, opts, tls !== undefined);
    const hs = new ClientHandshake(socket);
    const neg = await withDeadline(hs, opts, () =>
      hs.negotiate({
        exportName: u.exportName,
        structuredReplies: opts.structuredReplies ?? true,
        metaContexts: opts.metaContexts ?? [],
        ...(tls !== undefined ? { tls } : {}),
      }),
    );
    const conn = new NbdConnection(neg.socket, { structuredReplies: neg.structuredReplies, contextIds: new Set(neg.metaContexts.values()), maxInFlight }, neg.leftover);
    return new NbdClient(conn, neg, u.exportName);
  }

  /** NBD_OPT_LIST: the exports the server is willing to name. */
  static async list(uri: string | NbdUri, opts: ClientOptions = {}): Promise<{ name: string; description: string }[]> {
    const u = toNbdUri(uri);
    const tls = await tlsOptionsFor(u, opts);
    const socket = await openSocket(u.transport, opts, tls !== undefined);
    const hs = new ClientHandshake(socket);
    return withDeadline(hs, opts, () => hs.list(tls));
  }

  private flag(f: number): boolean {
    return (this.transmissionFlags & f) !== 0;
  }
  get readOnly(): boolean {
    return this.flag(NBD_FLAG_READ_ONLY);
  }
  get canFlush(): boolean {
    return this.flag(NBD_FLAG_SEND_FLUSH);
  }
  get canFua(): boolean {
    return this.flag(NBD_FLAG_SEND_FUA);
  }
  get canTrim(): boolean {
    return this.flag(NBD_FLAG_SEND_TRIM);
  }
  get canZero(): boolean {
    return this.flag(NBD_FLAG_SEND_WRITE_ZEROES);
  }
  get canFastZero(): boolean {
    return this.flag(NBD_FLAG_SEND_FAST_ZERO);
  }
  get canCache(): boolean {
    return this.flag(NBD_FLAG_SEND_CACHE);
  }
  get canMultiConn(): boolean {
    return this.flag(NBD_FLAG_CAN_MULTI_CONN);
  }
  get canDf(): boolean {
    return this.flag(NBD_FLAG_SEND_DF);
  }

  /** Requests queued or in flight on this connection. */
  get inFlight(): number {
    return this.conn.load;
  }

  /** False once the connection failed or was closed; `closedReason` says why. */
  get isOpen(): boolean {
    return this.conn.isOpen;
  }

  get closedReason(): Error | undefined {
    return this.conn.error;
  }

  async read(offset: number, length: number, opts: { signal?: AbortSignal; df?: boolean } = {}): Promise<Buffer> {
    checkRange("read", offset, length, this.size);
    let flags = 0;
    if (opts.df === true) {
      if (!this.canDf) throw unsupported("NBD_CMD_FLAG_DF");
      flags |= NBD_CMD_FLAG_DF;
    }
    if (length === 0) return Buffer.alloc(0);
    const parts = pieces(offset, length, this.maxPayload);
    const bufs = await Promise.all(parts.map((p) => this.send({ type: NBD_CMD_READ, flags, ...p, ...sig(opts.signal) }).then(dataOf)));
    return bufs.length === 1 && bufs[0] !== undefined ? bufs[0] : Buffer.concat(bufs, length);
  }

  async write(offset: number, data: Buffer, opts: { fua?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    checkRange("write", offset, data.length, this.size);
    this.checkWritable("write");
    const flags = this.fuaFlag(opts.fua);
    if (data.length === 0) return;
    const parts = pieces(0, data.length, this.maxPayload);
    await Promise.all(
      parts.map((p) => this.send({ type: NBD_CMD_WRITE, flags, offset: offset + p.offset, length: p.length, payload: data.subarray(p.offset, p.offset + p.length), ...sig(opts.signal) })),
    );
  }

  async flush(opts: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.canFlush) throw unsupported("NBD_CMD_FLUSH");
    await this.send({ type: NBD_CMD_FLUSH, flags: 0, offset: 0, length: 0, ...sig(opts.signal) });
  }

  async trim(offset: number, length: number, opts: { fua?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    checkRange("trim", offset, length, this.size);
    this.checkWritable("trim");
    if (!this.canTrim) throw unsupported("NBD_CMD_TRIM");
    await this.effect(NBD_CMD_TRIM, this.fuaFlag(opts.fua), offset, length, opts.signal);
  }

  async zero(offset: number, length: number, opts: { fua?: boolean; noHole?: boolean; fastZero?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    checkRange("zero", offset, length, this.size);
    this.checkWritable("zero");
    if (!this.canZero) throw unsupported("NBD_CMD_WRITE_ZEROES");
    let flags = this.fuaFlag(opts.fua);
    if (opts.noHole === true) flags |= NBD_CMD_FLAG_NO_HOLE;
    if (opts.fastZero === true) {
      if (!this.canFastZero) throw unsupported("NBD_CMD_FLAG_FAST_ZERO");
      flags |= NBD_CMD_FLAG_FAST_ZERO;
    }
    await this.effect(NBD_CMD_WRITE_ZEROES, flags, offset, length, opts.signal);
  }

  async cache(offset: number, length: number, opts: { signal?: AbortSignal } = {}): Promise<void> {
    checkRange("cache", offset, length, this.size);
    if (!this.canCache) throw unsupported("NBD_CMD_CACHE");
    await this.effect(NBD_CMD_CACHE, 0, offset, length, opts.signal);
  }

  /**
   * One NBD_CMD_BLOCK_STATUS: extents per negotiated context, with absolute offsets,
   * starting at `offset`. The server may describe less than `length` (and the last
   * extent may run past it); `extents()` loops and clips.
   */
  async blockStatus(offset: number, length: number, opts: { reqOne?: boolean; signal?: AbortSignal } = {}): Promise<Map<string, StatusExtent[]>> {
    checkRange("blockStatus", offset, length, this.size);
    if (length === 0) throw new InvalidArgumentError("blockStatus: length must be positive");
    if (this.metaContexts.size === 0) throw new InvalidArgumentError("blockStatus: no meta context was negotiated (pass metaContexts to connect)");
    const flags = opts.reqOne === true ? NBD_CMD_FLAG_REQ_ONE : 0;
    const out = await this.send({ type: NBD_CMD_BLOCK_STATUS, flags, offset, length: Math.min(length, MAX_EFFECT_LENGTH), ...sig(opts.signal) });
    const result = new Map<string, StatusExtent[]>();
    for (const [id, list] of out.status ?? []) {
      const name = this.contextNames.get(id);
      if (name === undefined) continue;
      const extents: StatusExtent[] = [];
      let at = offset;
      for (const e of list) {
        if (at >= this.size) break;
        const len = Math.min(e.length, this.size - at);
        extents.push({ offset: at, length: len, flag: e.flag });
        at += len;
      }
      result.set(name, extents);
    }
    return result;
  }

  /** Every extent of `context` over [offset, offset+length), clipped to the range, in order. */
  async *extents(context: string, offset = 0, length?: number): AsyncIterable<StatusExtent> {
    const len = length ?? this.size - offset;
    checkRange("extents", offset, len, this.size);
    if (!this.metaContexts.has(context)) throw new InvalidArgumentError(`extents: meta context '${context}' was not negotiated (have: ${[...this.metaContexts.keys()].join(", ") || "none"})`);
    const end = offset + len;
    let pos = offset;
    while (pos < end) {
      const map = await this.blockStatus(pos, end - pos);
      const list = map.get(context) ?? [];
      const start = pos;
      for (const e of list) {
        if (e.offset >= end) break;
        const stop = Math.min(e.offset + e.length, end);
        yield { offset: e.offset, length: stop - e.offset, flag: e.flag };
        pos = stop;
      }
      if (pos === start) throw new NbdProtocolError(`BLOCK_STATUS at ${pos} made no progress for '${context}'`);
    }
  }

  /** Calls `f` once if the connection breaks (not on close()); check `isOpen` after registering. */
  onFail(f: (e: Error) => void): void {
    this.conn.onFail(f);
  }

  /** Tears the connection down at once: everything pending fails with `reason`. */
  destroy(reason: Error): void {
    this.conn.fail(reason);
  }

  /** Waits for requests in flight, sends NBD_CMD_DISC and ends the socket. */
  async close(): Promise<void> {
    await this.conn.close();
  }

  private checkWritable(what: string): void {
    if (this.readOnly) throw new NbdCommandError(`${what}: export '${this.exportName}' is read-only`, "EPERM" satisfies Errno);
  }

  private fuaFlag(fua: boolean | undefined): number {
    if (fua !== true) return 0;
    if (!this.canFua) throw unsupported("NBD_CMD_FLAG_FUA");
    return NBD_CMD_FLAG_FUA;
  }

  private async effect(type: number, flags: number, offset: number, length: number, signal: AbortSignal | undefined): Promise<void> {
    if (length === 0) return;
    await Promise.all(pieces(offset, length, MAX_EFFECT_LENGTH).map((p) => this.send({ type, flags, ...p, ...sig(signal) })));
  }

  private send(spec: Parameters<NbdConnection["submit"]>[0]): Promise<CommandOutcome> {
    return this.conn.submit(spec);
  }
}

function sig(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal !== undefined ? { signal } : {};
}

function dataOf(o: CommandOutcome): Buffer {
  if (o.data === undefined) throw new NbdProtocolError("READ completed without data");
  return o.data;
}
