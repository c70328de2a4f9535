/**
 * Our client against a tiny scripted server (built from the shared codecs), to
 * provoke what real servers never do: bad magic, replies for unknown cookies,
 * chunks a command does not allow, overlapping READ chunks, a server that stops
 * reading (backpressure), and command errors that must leave the connection alive.
 * Large READs arrive in pieces, so the client's direct reads (data landing in the
 * READ buffer itself) and the cuts inside a reply are exercised end to end.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ConnectionClosedError, NbdCommandError, NbdNegotiationError, NbdProtocolError } from "../../../src/errors.js";
import {
  NBD_CMD_READ,
  NBD_EIO,
  NBD_EPERM,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_SEND_FLUSH,
  NBD_INFO_EXPORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_NONE,
} from "../../../src/nbd/constants.js";
import { NbdClient } from "../../../src/nbd/client.js";
import { ReplyDecoder } from "../../../src/nbd/client-reply-decoder.js";
import { ServerFrameDecoder } from "../../../src/nbd/frame-decoder.js";
import { encodeExportNameReply, encodeGreeting, encodeInfoItem, encodeOptionReply } from "../../../src/nbd/handshake-codec.js";
import { encodeChunkHeader, encodeErrorChunk, encodeOffsetDataHead, encodeOffsetHole, encodeSimpleReply, type RequestHeader } from "../../../src/nbd/transmission-codec.js";
import { formatNbdUri } from "../../../src/nbd/uri.js";

const SIZE = 1024 * 1024;

interface Script {
  structured?: boolean;
  /** Answer GO with ERR_UNSUP, forcing the EXPORT_NAME fallback. */
  noGo?: boolean;
  onRequest: (h: RequestHeader, sock: Socket, all: RequestHeader[]) => void;
  onConnection?: (sock: Socket) => void;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  vi.restoreAllMocks();
});

async function fakeServer(script: Script): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "nbd-fake-"));
  const path = join(dir, "s.sock");
  const server: Server = createServer((sock) => {
    sock.on("error", () => undefined);
    const dec = new ServerFrameDecoder();
    const seen: RequestHeader[] = [];
    sock.write(encodeGreeting(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES));
    script.onConnection?.(sock);
    sock.on("data", (chunk: Buffer) => {
      for (const f of dec.push(chunk)) {
        if (f.kind === "option") {
          if (f.option === NBD_OPT_STRUCTURED_REPLY) {
            sock.write(encodeOptionReply(f.option, script.structured === false ? NBD_REP_ERR_UNSUP : NBD_REP_ACK));
          } else if (f.option === NBD_OPT_GO && script.noGo !== true) {
            sock.write(encodeOptionReply(f.option, NBD_REP_INFO, encodeInfoItem({ type: NBD_INFO_EXPORT, size: SIZE, flags: NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH })));
            sock.write(encodeOptionReply(f.option, NBD_REP_ACK));
            dec.enterTransmission();
          } else if (f.option === NBD_OPT_EXPORT_NAME) {
            sock.write(encodeExportNameReply(SIZE, NBD_FLAG_HAS_FLAGS, true));
            dec.enterTransmission();
          } else {
            sock.write(encodeOptionReply(f.option, NBD_REP_ERR_UNSUP, Buffer.from("not here")));
            dec.resumeOptions(); // a refused GO does not end negotiation
          }
        } else if (f.kind === "request") {
          seen.push(f.header);
          script.onRequest(f.header, sock, seen);
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  cleanups.push(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });
  return formatNbdUri({ tls: false, transport: { kind: "unix", path }, exportName: "" });
}

async function connect(uri: string, structured = true): Promise<NbdClient> {
  const c = await NbdClient.connect(uri, { structuredReplies: structured });
  cleanups.push(() => c.close().catch(() => undefined));
  return c;
}

function done(cookie: bigint): Buffer {
  return encodeChunkHeader({ flags: NBD_REPLY_FLAG_DONE, type: NBD_REPLY_TYPE_NONE, cookie, length: 0 });
}

function dataChunk(cookie: bigint, offset: number, data: Buffer, last: boolean): Buffer {
  return Buffer.concat([encodeOffsetDataHead(last ? NBD_REPLY_FLAG_DONE : 0, cookie, offset, data.length), data]);
}

describe("client ↔ scripted server: protocol violations kill the connection", () => {
  it("bad reply magic rejects every pending command and closes the client", async () => {
    const uri = await fakeServer({
      onRequest: (_h, sock, all) => {
        if (all.length === 3) sock.write(Buffer.alloc(16, 0xee));
      },
    });
    const c = await connect(uri);
    const pending = [c.read(0, 512), c.read(512, 512), c.flush()];
    const results = await Promise.allSettled(pending);
    for (const r of results) {
      expect(r.status).toBe("rejected");
      if (r.status === "rejected") {
        expect(r.reason).toBeInstanceOf(NbdProtocolError);
        expect(String(r.reason)).toMatch(/bad reply magic 0xeeeeeeee/);
      }
    }
    expect(c.isOpen).toBe(false);
    await expect(c.read(0, 1)).rejects.toBeInstanceOf(NbdProtocolError);
  });

  it("a reply for an unknown cookie is a protocol error", async () => {
    const uri = await fakeServer({
      onRequest: (h, sock) => sock.write(encodeSimpleReply(0, h.cookie + 1000n)),
    });
    const c = await connect(uri, false);
    const e = await c.flush().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NbdProtocolError);
    expect(String(e)).toMatch(/unknown cookie/);
  });

  it("a chunk type the command does not allow is a protocol error", async () => {
    const uri = await fakeServer({
      onRequest: (h, sock) => sock.write(dataChunk(h.cookie, 0, Buffer.alloc(4), true)),
    });
    const c = await connect(uri);
    await expect(c.flush()).rejects.toThrow(/OFFSET_DATA not allowed for NBD_CMD_FLUSH/);
  });

  it("overlapping READ chunks are a protocol error", async () => {
    const uri = await fakeServer({
      onRequest: (h, sock) => {
        sock.write(dataChunk(h.cookie, h.offset, Buffer.alloc(300, 1), false));
        sock.write(encodeOffsetHole(NBD_REPLY_FLAG_DONE, h.cookie, h.offset + 200, 312));
      },
    });
    const c = await connect(uri);
    await expect(c.read(0, 512)).rejects.toThrow(/overlaps/);
  });

  it("a READ reply with a gap is a protocol error", async () => {
    const uri = await fakeServer({
      onRequest: (h, sock) => sock.write(dataChunk(h.cookie, h.offset, Buffer.alloc(100, 1), true)),
    });
    const c = await connect(uri);
    await expect(c.read(4096, 512)).rejects.toThrow(/left bytes \[4196, …\) uncovered/);
  });

  it("a server that hangs up rejects pending commands with ConnectionClosedError", async () => {
    const uri = await fakeServer({ onRequest: (_h, sock) => sock.destroy() });
    const c = await connect(uri);
    await expect(c.read(0, 512)).rejects.toBeInstanceOf(ConnectionClosedError);
    expect(c.isOpen).toBe(false);
  });
});

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** Write `b` in pieces with a pause between, so the client sees many partial reads. */
async function trickle(sock: Socket, b: Buffer, piece: number): Promise<void> {
  for (let at = 0; at < b.length && !sock.destroyed; at += piece) {
    sock.write(b.subarray(at, at + piece));
    await new Promise((r) => setTimeout(r, 1));
  }
}

describe("client ↔ scripted server: hostile READ replies never resolve a READ", () => {
  it("an OFFSET_DATA chunk outside the READ is a protocol error", async () => {
    const uri = await fakeServer({
      onRequest: (h, sock) => sock.write(dataChunk(h.cookie, h.offset + h.length - 10, Buffer.alloc(20, 1), true)),
    });
    const c = await connect(uri);
    const e = await c.read(4096, 512).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NbdProtocolError);
    expect(String(e)).toMatch(/OFFSET_DATA chunk \[4598, \+20\) lies outside the READ request \[4096, \+512\)/);
    expect(c.isOpen).toBe(false);
  });

  it("an OFFSET_DATA chunk for an unknown cookie is a protocol error", async () => {
    const uri = await fakeServer({
      onRequest: (h, sock) => sock.write(dataChunk(h.cookie + 1000n, h.offset, Buffer.alloc(h.length, 1), true)),
    });
    const c = await connect(uri);
    const results = await Promise.allSettled([c.read(0, 512), c.read(512, 512)]);
    for (const r of results) {
      expect(r.status).toBe("rejected");
      if (r.status === "rejected") {
        expect(r.reason).toBeInstanceOf(NbdProtocolError);
        expect(String(r.reason)).toMatch(/reply for unknown cookie/);
      }
    }
  });

  it("a large chunk overlapping data already streamed in is a protocol error", async () => {
    const mib = 1024 * 1024;
    const uri = await fakeServer({
      onRequest: (h, sock) => {
        void (async () => {
          await trickle(sock, dataChunk(h.cookie, h.offset, pattern(mib / 2, 1), false), 100_000);
          await trickle(sock, dataChunk(h.cookie, h.offset + mib / 2 - 1, pattern(mib / 2 + 1, 2), true), 100_000);
        })();
      },
    });
    const c = await connect(uri);
    await expect(c.read(0, mib)).rejects.toThrow(/overlaps data already received/);
  });

  it("a stream cut inside a reply rejects the READ (CONNECTION_CLOSED, the cut as cause), at any point", async () => {
    const len = 256 * 1024;
    const reply = (cookie: bigint): Buffer => dataChunk(cookie, 0, pattern(len, 3), true);
    // In the header, in the offset, at the first data byte, in a direct read, one byte short.
    for (const cut of [3, 21, 28, 28 + 100_000, 28 + len - 1]) {
      const uri = await fakeServer({
        onRequest: (h, sock) => {
          void trickle(sock, reply(h.cookie).subarray(0, cut), 70_000).then(() => setTimeout(() => sock.destroy(), 5));
        },
      });
      const c = await connect(uri);
      const e = await c.read(0, len).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(ConnectionClosedError);
      expect((e as Error).cause).toBeInstanceOf(NbdProtocolError);
      expect(String(e)).toMatch(/NBD server closed the connection: stream ended/);
    }
  });
});

describe("client ↔ scripted server: command errors keep the connection", () => {
  it("structured ERROR chunk fails one read; the next succeeds", async () => {
    const uri = await fakeServer({
      onRequest: (h, sock) => {
        if (h.offset === 0) sock.write(encodeErrorChunk(NBD_REPLY_FLAG_DONE, h.cookie, NBD_EIO, "disk on fire"));
        else sock.write(dataChunk(h.cookie, h.offset, Buffer.alloc(h.length, 7), true));
      },
    });
    const c = await connect(uri);
    const e = await c.read(0, 512).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NbdCommandError);
    expect((e as NbdCommandError).errno).toBe("EIO");
    expect(String(e)).toMatch(/disk on fire/);
    expect((await c.read(512, 512)).equals(Buffer.alloc(512, 7))).toBe(true);
    expect(c.isOpen).toBe(true);
  });

  it("simple error reply (no structured replies) fails one command only", async () => {
    const uri = await fakeServer({
      structured: false,
      onRequest: (h, sock) => {
        if (h.type === NBD_CMD_READ && h.offset === 0) sock.write(encodeSimpleReply(NBD_EPERM, h.cookie));
        else if (h.type === NBD_CMD_READ) sock.write(Buffer.concat([encodeSimpleReply(0, h.cookie), Buffer.alloc(h.length, 9)]));
        else sock.write(encodeSimpleReply(0, h.cookie));
      },
    });
    const c = await connect(uri);
    expect(c.structuredReplies).toBe(false);
    const e = await c.read(0, 16).catch((x: unknown) => x);
    expect((e as NbdCommandError).errno).toBe("EPERM");
    expect((await c.read(16, 16)).equals(Buffer.alloc(16, 9))).toBe(true);
    await c.flush();
  });

  it("matches out-of-order replies by cookie and reassembles split reads", async () => {
    const held: RequestHeader[] = [];
    const uri = await fakeServer({
      onRequest: (h, sock) => {
        held.push(h);
        if (held.length < 4) return;
        // answer in reverse order, each read in two chunks, second half first
        for (const r of held.reverse()) {
          const half = r.length / 2;
          sock.write(dataChunk(r.cookie, r.offset + half, Buffer.alloc(half, Number(r.offset / 512) + 0x40), false));
          sock.write(dataChunk(r.cookie, r.offset, Buffer.alloc(half, Number(r.offset / 512) + 0x40), false));
          sock.write(done(r.cookie));
        }
      },
    });
    const c = await connect(uri);
    const out = await Promise.all([0, 1, 2, 3].map((i) => c.read(i * 512, 512)));
    out.forEach((b, i) => expect(b.equals(Buffer.alloc(512, 0x40 + i))).toBe(true));
  });

  it("streams large READs, split and interleaved across cookies, into their buffers (direct reads included)", async () => {
    const direct = vi.spyOn(ReplyDecoder.prototype, "pushedDirect");
    const len = 256 * 1024;
    const held: RequestHeader[] = [];
    const uri = await fakeServer({
      onRequest: (h, sock) => {
        held.push(h);
        if (held.length < 3) return;
        // Per READ: a hole, then two data chunks, second half first; chunks of the
        // three READs interleaved; all written in pieces.
        const parts: Buffer[][] = held.map((r) => {
          const seed = Number(r.offset / len);
          const q = len / 4;
          return [
            encodeOffsetHole(0, r.cookie, r.offset, q),
            dataChunk(r.cookie, r.offset + 2 * q, pattern(2 * q, seed), false),
            dataChunk(r.cookie, r.offset + q, pattern(q, seed + 1), true),
          ];
        });
        const stream = Buffer.concat([0, 1, 2].flatMap((i) => parts.map((p) => p[i] ?? Buffer.alloc(0))));
        void trickle(sock, stream, 100_000);
      },
    });
    const c = await connect(uri);
    const out = await Promise.all([0, 1, 2].map((i) => c.read(i * len, len)));
    out.forEach((b, i) => {
      const q = len / 4;
      expect(b.subarray(0, q).equals(Buffer.alloc(q))).toBe(true);
      expect(b.subarray(q, 2 * q).equals(pattern(q, i + 1))).toBe(true);
      expect(b.subarray(2 * q).equals(pattern(2 * q, i))).toBe(true);
    });
    expect(direct).toHaveBeenCalled();
    expect(c.isOpen).toBe(true);
  });

  it("streams a large simple-reply READ (no structured replies) into its buffer", async () => {
    const len = 1024 * 1024;
    let sending = Promise.resolve();
    const uri = await fakeServer({
      structured: false,
      onRequest: (h, sock) => {
        // One reply after the other: a simple reply cannot be interleaved.
        if (h.type === NBD_CMD_READ) sending = sending.then(() => trickle(sock, Buffer.concat([encodeSimpleReply(0, h.cookie), pattern(h.length, 7)]), 200_000));
        else sock.write(encodeSimpleReply(0, h.cookie));
      },
    });
    const c = await connect(uri, false);
    const [a, b] = await Promise.all([c.read(0, len), c.read(len - 4096, 4096)]);
    expect(a.equals(pattern(len, 7))).toBe(true);
    expect(b.equals(pattern(4096, 7))).toBe(true);
  });

  it("falls back to NBD_OPT_EXPORT_NAME when GO is unsupported", async () => {
    const uri = await fakeServer({ noGo: true, onRequest: (h, sock) => sock.write(done(h.cookie)) });
    const c = await connect(uri);
    expect(c.size).toBe(SIZE);
    expect(c.canFlush).toBe(false);
  });

  it("waits for 'drain' when the server stops reading", async () => {
    let paused: Socket | undefined;
    const uri = await fakeServer({
      onConnection: (sock) => {
        paused = sock;
      },
      onRequest: (h, sock) => sock.write(done(h.cookie)),
    });
    const c = await NbdClient.connect(uri, { maxInFlight: 64 });
    cleanups.push(() => c.close().catch(() => undefined));
    paused?.pause();
    const writes = Array.from({ length: 16 }, (_, i) => c.write(i * 65536, Buffer.alloc(65536, i)));
    await new Promise((r) => setTimeout(r, 50));
    paused?.resume();
    await Promise.all(writes);
  });
});

describe("client negotiation against a scripted server", () => {
  it("reports an option error with its name", async () => {
    const uri = await fakeServer({ onRequest: () => undefined });
    const e = await NbdClient.connect(uri, { metaContexts: ["base:allocation"] }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NbdNegotiationError);
    expect(String(e)).toMatch(/NBD_OPT_SET_META_CONTEXT failed \(NBD_REP_ERR_UNSUP\): not here/);
  });
});
