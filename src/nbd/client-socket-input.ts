/**
 * Where a client socket's received bytes go: first to the handshake
 * (SocketReader), then to the transmission phase (NbdConnection). One input per
 * socket, found through `SocketInput.of(socket)`, so the layers (and callers that
 * build them directly, like plugin/conformance/raw-nbd.ts) need not pass it on.
 *
 * Two sources:
 * - `SocketInput.connectWithUserBuffer`: a plain socket opened with net.connect's
 *   documented `onread` option, in its buffer-function form: Node asks which
 *   buffer the next read goes into. Normally one reused buffer per connection,
 *   instead of a fresh 64 KiB allocation per read (whose churn showed up as GC in
 *   client profiles). But while the sink is receiving a large READ payload whose
 *   header it has already validated, the answer is the rest of that READ's own
 *   buffer (`directTarget`), so the kernel writes the data in place and no copy is
 *   made in user space. Node reads `onread` only when the socket is constructed,
 *   and a socket with it never emits 'data', so it is chosen at connect time and
 *   the handshake reads through it too.
 * - `of(socket)` on any other socket: its 'data' events. TLS sockets are always of
 *   this kind, since tls.connect ignores `onread` when it wraps an existing socket
 *   (STARTTLS does exactly that).
 *
 * Invariants:
 * - A chunk given to `push` is valid only during the call (it may be a view of the
 *   reused buffer); a sink copies whatever it keeps.
 * - Bytes that arrive while no sink is attached are copied and held, then handed
 *   to the next sink, in order, before any newer byte.
 * - A direct target is asked for only after every byte read so far has been
 *   pushed, and is used for exactly the next read; the bytes read into it are
 *   reported to the sink that gave it (`pushedDirect`), or, if that sink has gone,
 *   delivered like any other chunk. So no byte is lost, reordered or read twice.
 * - After `release()` (STARTTLS: the TLS socket takes over the stream) nothing is
 *   delivered any more.
 */
import { connect as netConnect, type NetConnectOpts, type Socket } from "node:net";

export interface InputSink {
  /** Received bytes; `chunk` is valid only during the call. */
  push(chunk: Buffer): void;
  /**
   * User-buffer inputs only: a buffer the next read may fill directly, from its
   * start (the unfilled rest of a payload's destination), or undefined.
   */
  directTarget?(): Buffer | undefined;
  /** The first `n` bytes of `target`, the last directTarget(), were read in place. */
  pushedDirect?(target: Buffer, n: number): void;
}

/** As for accepted sockets (socket-user-buffer.ts); 64 KiB to 1 MiB measured the same here, within noise. */
export const CLIENT_READ_BUFFER = 256 * 1024;

const inputs = new WeakMap<Socket, SocketInput>();

export class SocketInput {
  private sink: InputSink | undefined;
  private held: Buffer[] = [];
  private released = false;
  private readonly onData = (chunk: Buffer): void => this.deliver(chunk);
  /** The sink whose direct target the pending read goes into, if any. */
  private directOwner: InputSink | undefined;

  private constructor(
    /** "user-buffer": fed by `onread`; "data-events": by the socket's 'data' events. */
    readonly kind: "user-buffer" | "data-events",
    private readonly socket: Socket | undefined,
  ) {}

  /** The input of `socket`, listening to its 'data' events if it has none yet. */
  static of(socket: Socket): SocketInput {
    let input = inputs.get(socket);
    if (input === undefined) {
      input = new SocketInput("data-events", socket);
      socket.on("data", input.onData);
      inputs.set(socket, input);
    }
    return input;
  }

  /**
   * net.connect with each read going into one reused buffer of `size` bytes, or
   * into the attached sink's direct target when it offers one. Plain sockets
   * only: a socket that will carry TLS must use 'data' events.
   */
  static connectWithUserBuffer(opts: NetConnectOpts, size = CLIENT_READ_BUFFER): Socket {
    const input = new SocketInput("user-buffer", undefined);
    const own = Buffer.allocUnsafe(size);
    /** Where the read in progress goes: `own`, or a sink's direct target. */
    let current: Buffer = own;
    const socket = netConnect({
      ...opts,
      onread: {
        // Node calls this once at connect and again after each read's callback,
        // that is, once everything read before has been pushed.
        buffer: (): Buffer => {
          current = input.nextReadBuffer(own);
          return current;
        },
        // The read filled the first n bytes of `current`; returning true keeps reading.
        callback: (n: number): boolean => {
          input.received(current, n, current === own);
          return true;
        },
      },
    });
    inputs.set(socket, input);
    return socket;
  }

  private nextReadBuffer(own: Buffer): Buffer {
    const sink = this.released ? undefined : this.sink;
    const direct = sink?.directTarget?.();
    this.directOwner = direct !== undefined ? sink : undefined;
    return direct ?? own;
  }

  private received(buf: Buffer, n: number, own: boolean): void {
    const owner = this.directOwner;
    this.directOwner = undefined;
    if (!own && owner !== undefined && owner === this.sink && !this.released) owner.pushedDirect?.(buf, n);
    else this.deliver(buf.subarray(0, n));
  }

  /** Deliver to `sink` from now on, after any held bytes. */
  attach(sink: InputSink): void {
    this.sink = sink;
    const held = this.held;
    this.held = [];
    for (const b of held) {
      if (this.sink !== sink) {
        // The sink detached while taking held bytes: keep the rest for the next one.
        this.held.push(b);
        continue;
      }
      sink.push(b);
    }
  }

  detach(): void {
    this.sink = undefined;
  }

  /** Stop delivering for good; returns the bytes held and not yet delivered. */
  release(): Buffer {
    this.released = true;
    this.sink = undefined;
    if (this.kind === "data-events") this.socket?.off("data", this.onData);
    const held = Buffer.concat(this.held);
    this.held = [];
    return held;
  }

  private deliver(chunk: Buffer): void {
    if (this.released) return;
    const sink = this.sink;
    if (sink !== undefined) sink.push(chunk);
    else this.held.push(Buffer.from(chunk));
  }
}
