/**
 * Async exact reads over a socket, for the client handshake, where the
 * conversation is strictly request/response and reads read best as straight-line
 * code (`await reader.read(20)`). The transmission phase does not use this: it is
 * push-based (ReplyDecoder), since replies arrive out of order.
 *
 * One reader owns the socket's 'data' events until `detach()`, which hands back
 * any bytes received beyond the last read (they belong to the next phase; at a
 * STARTTLS switch there must be none).
 */
import type { Socket } from "node:net";
import { ConnectionClosedError } from "../errors.js";
import { ByteQueue } from "./byte-queue.js";

export class SocketReader {
  private readonly q = new ByteQueue();
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private readonly onData = (chunk: Buffer): void => {
    this.q.push(chunk);
    this.wake();
  };
  private readonly onEnd = (): void => this.fail(new ConnectionClosedError("server closed the connection during the handshake"));
  private readonly onError = (e: Error): void =>
    this.fail(new ConnectionClosedError(`connection failed during the handshake: ${e.message}`, { cause: e }));

  constructor(private readonly socket: Socket) {
    socket.on("data", this.onData);
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
    this.socket.off("data", this.onData);
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
