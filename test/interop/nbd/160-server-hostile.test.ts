/**
 * Hostile and broken clients on raw sockets. After every abuse the server is
 * still up, drops only the offending connection, leaks no connection, and a
 * libnbd session opened before the abuse (plus a fresh nbdinfo) keeps working.
 */
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_LIST,
  NBD_REP_ACK,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_SERVER,
  NBD_SIMPLE_REPLY_MAGIC,
} from "../../../src/nbd/constants.js";
import {
  GREETING_LENGTH,
  decodeExportNameReply,
  decodeGreeting,
  decodeOptionReplyHeader,
  decodeServerReply,
  encodeClientFlags,
  encodeInfoRequest,
  encodeOption,
} from "../../../src/nbd/handshake-codec.js";
import { encodeRequestHeader } from "../../../src/nbd/transmission-codec.js";
import { MemoryBackend } from "../../../src/nbd/backends/memory-backend.js";
import { startServer, type RunningServer } from "../../support/nbd-server.js";
import { NbdshSession } from "../../support/nbdsh-session.js";
import { tool } from "../../support/tools.js";

const SIZE = 8 * 1024 * 1024;
const EXPORT = "victim";

/** A raw socket with "read exactly n bytes" and "did the server hang up". */
class Raw {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  readonly closed: Promise<void>;
  private isClosed = false;

  private constructor(private readonly sock: Socket) {
    sock.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    sock.on("error", () => undefined);
    this.closed = new Promise((resolve) =>
      sock.on("close", () => {
        this.isClosed = true;
        this.wake?.();
        resolve();
      }),
    );
  }

  static async open(path: string): Promise<Raw> {
    const sock = connect(path);
    await new Promise<void>((resolve, reject) => {
      sock.once("connect", resolve);
      sock.once("error", reject);
    });
    return new Raw(sock);
  }

  write(b: Buffer): void {
    this.sock.write(b);
  }

  async read(n: number, ms = 3000): Promise<Buffer> {
    const deadline = Date.now() + ms;
    while (this.buf.length < n) {
      if (this.isClosed) throw new Error(`server closed with ${this.buf.length}/${n} bytes buffered`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out reading ${n} bytes (have ${this.buf.length})`);
      await Promise.race([new Promise<void>((r) => (this.wake = r)), sleep(left)]);
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Resolves true if the server hangs up within `ms`. */
  async hangsUp(ms = 3000): Promise<boolean> {
    return Promise.race([this.closed.then(() => true), sleep(ms).then(() => false)]);
  }

  destroy(): void {
    this.sock.destroy();
  }

  /** Stop reading, so the kernel buffers fill and the server sees backpressure. */
  pause(): void {
    this.sock.pause();
  }

  resume(): void {
    this.sock.resume();
  }

  end(): void {
    this.sock.end();
  }

  /** Greeting + client flags. */
  async handshake(flags = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES): Promise<void> {
    decodeGreeting(await this.read(GREETING_LENGTH));
    this.write(encodeClientFlags(flags));
  }

  async optionReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const h = decodeOptionReplyHeader(await this.read(20));
    return { option: h.option, type: h.type, data: await this.read(h.length) };
  }

  /** Option replies up to and including the final (ACK or error) one. */
  async optionReplies(): Promise<{ option: number; type: number; data: Buffer }[]> {
    const out = [];
    for (;;) {
      const r = await this.optionReply();
      out.push(r);
      if (r.type === NBD_REP_ACK || (r.type & 0x80000000) !== 0) return out;
    }
  }

  /** GO on the test export (no structured replies: simple replies only). */
  async go(): Promise<void> {
    await this.handshake();
    this.write(encodeOption(NBD_OPT_GO, encodeInfoRequest({ name: EXPORT, infos: [] })));
    const replies = await this.optionReplies();
    expect(replies.map((r) => r.type)).toEqual([NBD_REP_INFO, NBD_REP_ACK]);
  }

  async simpleReply(): Promise<{ error: number; cookie: bigint }> {
    const b = await this.read(16);
    expect(b.readUInt32BE(0)).toBe(NBD_SIMPLE_REPLY_MAGIC);
    return { error: b.readUInt32BE(4), cookie: b.readBigUInt64BE(8) };
  }
}

const req = (type: number, cookie: bigint, offset: number, length: number, flags = 0): Buffer =>
  encodeRequestHeader({ type, cookie, offset, length, flags });

describe("hostile clients", () => {
  let s: RunningServer;
  let h: NbdshSession;
  let step = 0;

  beforeAll(async () => {
    s = await startServer({ size: SIZE, exportName: EXPORT, handshakeTimeoutMs: 1500 });
    h = await NbdshSession.open(s.uri);
  });
  afterAll(async () => {
    await h.close();
    await s.stop();
  });

  afterEach(async () => {
    // The well-behaved session opened before the abuse still reads and writes …
    step++;
    const hex = Buffer.from(`step ${step}`).toString("hex");
    await h.ok({ op: "pwrite", off: 4096 * step, hex });
    expect((await h.ok({ op: "pread", off: 4096 * step, len: hex.length / 2 })).hex).toBe(hex);
    // … a new client connects …
    const { stdout } = await tool("nbdinfo", ["--size", s.uri]);
    expect(stdout.trim()).toBe(String(SIZE));
    // … and only the nbdsh session is left connected (abusive ones were dropped).
    const deadline = Date.now() + 3000;
    while (s.server.connectionCount !== 1 && Date.now() < deadline) await sleep(20);
    expect(s.server.connectionCount).toBe(1);
  });

  it("garbage instead of client flags: dropped", async () => {
    const c = await Raw.open(s.socket);
    await c.read(GREETING_LENGTH);
    c.write(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    expect(await c.hangsUp()).toBe(true);
  });

  it("bad IHAVEOPT magic: dropped", async () => {
    const c = await Raw.open(s.socket);
    await c.handshake();
    const opt = encodeOption(NBD_OPT_LIST);
    opt.write("IHAVEOPX", 0, "latin1");
    c.write(opt);
    expect(await c.hangsUp()).toBe(true);
  });

  it("truncated handshake, then the client disconnects", async () => {
    const c = await Raw.open(s.socket);
    await c.handshake();
    c.write(encodeOption(NBD_OPT_GO, encodeInfoRequest({ name: EXPORT, infos: [] })).subarray(0, 21));
    await sleep(20);
    c.end();
    await c.closed;
  });

  it("a client that connects and never speaks is dropped after the handshake timeout", async () => {
    const c = await Raw.open(s.socket);
    await c.read(GREETING_LENGTH);
    expect(await c.hangsUp(4000)).toBe(true);
  }, 15_000);

  it("an option claiming 1 GiB of data: dropped at once, without waiting for the data", async () => {
    const c = await Raw.open(s.socket);
    await c.handshake();
    const opt = encodeOption(NBD_OPT_LIST);
    opt.writeUInt32BE(0x40000000, 12);
    c.write(opt);
    expect(await c.hangsUp(1000)).toBe(true);
  });

  it("an unknown option gets NBD_REP_ERR_UNSUP and the next option still works", async () => {
    const c = await Raw.open(s.socket);
    await c.handshake();
    c.write(encodeOption(0x1234, Buffer.from("whatever")));
    const [unsup] = await c.optionReplies();
    expect(unsup).toMatchObject({ option: 0x1234, type: NBD_REP_ERR_UNSUP });
    c.write(encodeOption(NBD_OPT_LIST));
    const list = await c.optionReplies();
    expect(list.map((r) => r.type)).toEqual([NBD_REP_SERVER, NBD_REP_ACK]);
    expect(decodeServerReply(list[0]?.data ?? Buffer.alloc(0)).name).toBe(EXPORT);
    c.write(encodeOption(NBD_OPT_GO, encodeInfoRequest({ name: EXPORT, infos: [] })));
    expect((await c.optionReplies()).map((r) => r.type)).toEqual([NBD_REP_INFO, NBD_REP_ACK]);
    c.write(req(NBD_CMD_READ, 5n, 0, 512));
    expect(await c.simpleReply()).toEqual({ error: 0, cookie: 5n });
    expect(await c.read(512)).toHaveLength(512);
    c.end();
    await c.closed;
  });

  it("a GO whose payload is malformed gets NBD_REP_ERR_INVALID and negotiation goes on", async () => {
    const c = await Raw.open(s.socket);
    await c.handshake();
    // Name length claims 100 bytes but only 3 follow: framed correctly, payload malformed.
    const bad = Buffer.alloc(7);
    bad.writeUInt32BE(100, 0);
    bad.write("abc", 4);
    c.write(encodeOption(NBD_OPT_GO, bad));
    expect((await c.optionReplies()).map((r) => r.type)).toEqual([NBD_REP_ERR_INVALID]);
    c.write(encodeOption(NBD_OPT_GO, encodeInfoRequest({ name: EXPORT, infos: [] })));
    expect((await c.optionReplies()).map((r) => r.type)).toEqual([NBD_REP_INFO, NBD_REP_ACK]);
    c.end();
    await c.closed;
  });

  it("options pipelined behind a refused GO are still answered", async () => {
    const c = await Raw.open(s.socket);
    await c.handshake();
    c.write(Buffer.concat([encodeOption(NBD_OPT_GO, encodeInfoRequest({ name: "nope", infos: [] })), encodeOption(NBD_OPT_LIST)]));
    expect((await c.optionReplies()).map((r) => r.type)).toEqual([NBD_REP_ERR_UNKNOWN]);
    expect((await c.optionReplies()).map((r) => r.type)).toEqual([NBD_REP_SERVER, NBD_REP_ACK]);
    c.end();
    await c.closed;
  });

  it("a request pipelined right behind GO is served", async () => {
    const c = await Raw.open(s.socket);
    decodeGreeting(await c.read(GREETING_LENGTH));
    c.write(
      Buffer.concat([
        encodeClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES),
        encodeOption(NBD_OPT_GO, encodeInfoRequest({ name: EXPORT, infos: [] })),
        req(NBD_CMD_READ, 77n, 0, 16),
      ]),
    );
    expect((await c.optionReplies()).map((r) => r.type)).toEqual([NBD_REP_INFO, NBD_REP_ACK]);
    expect(await c.simpleReply()).toEqual({ error: 0, cookie: 77n });
    expect(await c.read(16)).toHaveLength(16);
    c.end();
    await c.closed;
  });

  it.each([
    ["with NO_ZEROES", NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES, 10],
    ["without NO_ZEROES", NBD_FLAG_C_FIXED_NEWSTYLE, 134],
  ])("NBD_OPT_EXPORT_NAME (the pre-GO way in) %s", async (_name, flags, replyLength) => {
    const c = await Raw.open(s.socket);
    await c.handshake(flags);
    c.write(encodeOption(NBD_OPT_EXPORT_NAME, Buffer.from(EXPORT)));
    const reply = await c.read(replyLength);
    expect(decodeExportNameReply(reply)).toMatchObject({ size: SIZE });
    expect(reply.subarray(10).equals(Buffer.alloc(replyLength - 10))).toBe(true);
    c.write(req(NBD_CMD_READ, 3n, 0, 8));
    expect(await c.simpleReply()).toEqual({ error: 0, cookie: 3n });
    await c.read(8);
    c.end();
    await c.closed;
  });

  it("NBD_OPT_EXPORT_NAME for an unknown export: the server can only hang up", async () => {
    const c = await Raw.open(s.socket);
    await c.handshake();
    c.write(encodeOption(NBD_OPT_EXPORT_NAME, Buffer.from("nope")));
    expect(await c.hangsUp()).toBe(true);
  });

  it("an unknown command gets EINVAL and the connection lives on", async () => {
    const c = await Raw.open(s.socket);
    await c.go();
    c.write(req(99, 1n, 0, 0));
    expect(await c.simpleReply()).toEqual({ error: 22, cookie: 1n });
    c.write(req(NBD_CMD_READ, 2n, 0, 8));
    expect(await c.simpleReply()).toEqual({ error: 0, cookie: 2n });
    await c.read(8);
    c.end();
    await c.closed;
  });

  it("a bad request magic in transmission: dropped", async () => {
    const c = await Raw.open(s.socket);
    await c.go();
    const bad = req(NBD_CMD_READ, 1n, 0, 8);
    bad.writeUInt32BE(0xdeadbeef, 0);
    c.write(bad);
    expect(await c.hangsUp()).toBe(true);
  });

  it("an oversized WRITE is failed with EINVAL and the stream stays in sync", async () => {
    const c = await Raw.open(s.socket);
    await c.go();
    const len = 32 * 1024 * 1024 + 4096;
    c.write(req(NBD_CMD_WRITE, 1n, 0, len));
    c.write(Buffer.alloc(len, 0xee));
    c.write(req(NBD_CMD_READ, 2n, 0, 8));
    expect(await c.simpleReply()).toEqual({ error: 22, cookie: 1n });
    expect(await c.simpleReply()).toEqual({ error: 0, cookie: 2n });
    expect((await c.read(8)).equals(Buffer.alloc(8, 0xee))).toBe(false);
    c.end();
    await c.closed;
  });

  it("a WRITE claiming 64 MiB, then the client disconnects mid-payload", async () => {
    const c = await Raw.open(s.socket);
    await c.go();
    c.write(req(NBD_CMD_WRITE, 1n, 0, 64 * 1024 * 1024));
    c.write(Buffer.alloc(1024 * 1024, 0x77));
    await sleep(20);
    c.destroy();
    await c.closed;
  });

  it("a WRITE of a valid size cut off mid-payload leaves no partial write behind", async () => {
    const before = await s.backend.read(SIZE - 65536, 65536);
    const c = await Raw.open(s.socket);
    await c.go();
    c.write(req(NBD_CMD_WRITE, 1n, SIZE - 65536, 65536));
    c.write(Buffer.alloc(30000, 0x99));
    await sleep(20);
    c.destroy();
    await c.closed;
    expect((await s.backend.read(SIZE - 65536, 65536)).equals(before)).toBe(true);
  });

  it("a client that pipelines many reads and is slow to take the replies still gets every reply", async () => {
    const c = await Raw.open(s.socket);
    await c.go();
    const n = 300;
    const len = 64 * 1024;
    const reqs: Buffer[] = [];
    for (let i = 0; i < n; i++) reqs.push(req(NBD_CMD_READ, BigInt(1000 + i), (i % 64) * len, len));
    c.pause();
    c.write(Buffer.concat(reqs));
    await sleep(300);
    c.resume();
    const seen = new Set<bigint>();
    for (let i = 0; i < n; i++) {
      const r = await c.simpleReply();
      expect(r.error).toBe(0);
      seen.add(r.cookie);
      await c.read(len);
    }
    expect(seen.size).toBe(n);
    c.end();
    await c.closed;
  });

  it("a client that disconnects with many requests in flight", async () => {
    const c = await Raw.open(s.socket);
    await c.go();
    const reqs: Buffer[] = [];
    for (let i = 0; i < 100; i++) reqs.push(req(NBD_CMD_READ, BigInt(i), 0, 1024 * 1024));
    c.write(Buffer.concat(reqs));
    await sleep(5);
    c.destroy();
    await c.closed;
  });
});

describe("graceful shutdown", () => {
  /** A memory disk whose reads take a while, so requests are still in flight at close(). */
  class SlowBackend extends MemoryBackend {
    started = 0;
    override async read(offset: number, length: number): Promise<Buffer> {
      this.started++;
      await sleep(200);
      return super.read(offset, length);
    }
  }

  it("answers every request already in flight, then closes", async () => {
    const backend = new SlowBackend(SIZE);
    const s = await startServer({ backend, exportName: EXPORT });
    const c = await Raw.open(s.socket);
    await c.go();
    const n = 20;
    for (let i = 0; i < n; i++) c.write(req(NBD_CMD_READ, BigInt(i), i * 4096, 4096));
    while (backend.started < n) await sleep(5); // all dispatched to the backend
    const closing = s.stop();
    const seen = new Set<bigint>();
    for (let i = 0; i < n; i++) {
      const r = await c.simpleReply();
      expect(r.error).toBe(0);
      seen.add(r.cookie);
      await c.read(4096);
    }
    expect(seen.size).toBe(n);
    expect(await c.hangsUp()).toBe(true);
    await closing;
  });

  it("a request that arrives while draining gets ESHUTDOWN", async () => {
    const backend = new SlowBackend(SIZE);
    const s = await startServer({ backend, exportName: EXPORT });
    const c = await Raw.open(s.socket);
    await c.go();
    c.write(req(NBD_CMD_READ, 1n, 0, 4096));
    while (backend.started < 1) await sleep(5);
    const closing = s.stop();
    c.write(req(NBD_CMD_READ, 2n, 4096, 4096));
    const replies = new Map<bigint, number>();
    for (let i = 0; i < 2; i++) {
      const r = await c.simpleReply();
      replies.set(r.cookie, r.error);
      if (r.error === 0) await c.read(4096);
    }
    expect(replies.get(1n)).toBe(0);
    expect(replies.get(2n)).toBe(108); // ESHUTDOWN
    expect(await c.hangsUp()).toBe(true);
    await closing;
  });
});
