/**
 * Async exact reads over a socket, for the client handshake, where the
 * conversation is strictly request/response and reads read best as straight-line
 * code (`await reader.read(20)`). The transmission phase does not use this: it is
 * push-based (ReplyDecoder), since replies arrive out of order.
 *
 * One reader is the sink of the socket's input (client-socket-input.ts: 'data'
 * events, or the reused buffer of `onread`) until `detach()`, which hands back
 * any bytes received beyond the last read (they belong to the next phase; at a
 * STARTTLS switch there must be none). Received chunks are copied, since a chunk
 * from a reused buffer is valid only during the call; handshake replies are small.
 */
import type { Socket } from "node:net";
import { ConnectionClosedError } from "../errors.js";
import { ByteQueue } from "./byte-queue.js";
import { SocketInput } from "./client-socket-input.js";

export class SocketReader {
  private readonly q = new ByteQueue();
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private readonly input: SocketInput;
  private readonly onData = (chunk: Buffer): void => {
    this.q.push(Buffer.from(chunk));
    this.wake();
  };
  private readonly onEnd = (): void => this.fail(new ConnectionClosedError("server closed the connection during the handshake"));
  private readonly onError = (e: Error): void =>
    this.fail(new ConnectionClosedError(`connection failed during the handshake: ${e.message}`, { cause: e }));

  constructor(private readonly socket: Socket) {
    this.input = SocketInput.of(socket);
    this.input.attach({ push: this.onData });
    socket.on("end", this.onEnd);
    socket.on("close", this.onEnd);
    socket.on("error", this.onError);
  }

  read(n: number): Promise<Buffer> {
    if (this.waiter !== undefined) throw new Error("SocketReader: concurrent reads");
    if (this.q.length >= n) return Promise.resolve(this.q.take(n));
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
    });
  }

  /** Fail the pending and future reads (e.g. on abort or timeout). */
  fail(e: Error): void {
    this.failure ??= e;
    const w = this.waiter;
    if (w !== undefined) {
      this.waiter = undefined;
      w.reject(this.failure);
    }
  }

  detach(): Buffer {
    this.input.detach();
    this.socket.off("end", this.onEnd);
    this.socket.off("close", this.onEnd);
    this.socket.off("error", this.onError);
    return this.q.drain();
  }

  private wake(): void {
    const w = this.waiter;
    if (w !== undefined && this.q.length >= w.n) {
      this.waiter = undefined;
      w.resolve(this.q.take(w.n));
    }
  }
}
