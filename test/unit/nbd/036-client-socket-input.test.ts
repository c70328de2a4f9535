/**
 * SocketInput hands a client socket's bytes to one sink at a time, in order, each
 * exactly once: whether they come from 'data' events or from net.connect's
 * `onread` (a reused buffer, or a sink's direct target), and whether a sink is
 * attached when they arrive or not.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, Socket, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SocketInput, type InputSink } from "../../../src/nbd/client-socket-input.js";

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A Unix socket server that writes `data` to each client in pieces, with pauses, then ends. */
async function server(data: Buffer, piece: number, startDelayMs = 0): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "nbd-input-"));
  const path = join(dir, "s.sock");
  const srv: Server = createServer((sock) => {
    sock.on("error", () => undefined);
    void (async () => {
      await new Promise((r) => setTimeout(r, startDelayMs));
      for (let at = 0; at < data.length; at += piece) {
        sock.write(data.subarray(at, at + piece));
        await new Promise((r) => setTimeout(r, 1));
      }
      sock.end();
    })();
  });
  await new Promise<void>((r) => srv.listen(path, r));
  cleanups.push(async () => {
    await new Promise<void>((r) => srv.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });
  return path;
}

function ended(sock: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    sock.once("close", () => resolve());
    sock.once("error", reject);
  });
}

/** A sink that appends pushed chunks (copying them) to `out`. */
function collector(out: Buffer[]): InputSink {
  return { push: (c) => out.push(Buffer.from(c)) };
}

describe("SocketInput over 'data' events", () => {
  it("holds copies of bytes that arrive with no sink, then hands them over first, in order", () => {
    const sock = new Socket();
    const input = SocketInput.of(sock);
    expect(SocketInput.of(sock)).toBe(input);
    expect(input.kind).toBe("data-events");
    const reused = Buffer.alloc(3);
    for (const s of ["abc", "def"]) {
      reused.write(s);
      sock.emit("data", reused);
    }
    reused.fill(0);
    const got: Buffer[] = [];
    input.attach(collector(got));
    sock.emit("data", Buffer.from("ghi"));
    expect(Buffer.concat(got).toString()).toBe("abcdefghi");
    input.detach();
    sock.emit("data", Buffer.from("jk"));
    expect(input.release().toString()).toBe("jk");
    sock.emit("data", Buffer.from("lost"));
    input.attach(collector(got));
    expect(Buffer.concat(got).toString()).toBe("abcdefghi");
    expect(sock.listenerCount("data")).toBe(0);
    sock.destroy();
  });
});

describe("SocketInput over onread (user buffer)", () => {
  it("delivers the stream from a small reused buffer, held bytes first", async () => {
    const data = pattern(300_000, 1);
    const path = await server(data, 7_000);
    const sock = SocketInput.connectWithUserBuffer({ path }, 4096);
    const done = ended(sock);
    const input = SocketInput.of(sock);
    expect(input.kind).toBe("user-buffer");
    // Attach late: what came before is held, copied out of the reused buffer.
    await new Promise((r) => setTimeout(r, 30));
    const got: Buffer[] = [];
    input.attach(collector(got));
    await done;
    expect(Buffer.concat(got).equals(data)).toBe(true);
  });

  it("lets a sink take reads straight into its own buffer, each byte once, in order", async () => {
    const total = 2 * 1024 * 1024;
    const data = pattern(total, 2);
    const path = await server(data, 90_000);
    const sock = SocketInput.connectWithUserBuffer({ path }, 16 * 1024);
    const done = ended(sock);
    const dest = Buffer.alloc(total);
    let pos = 0;
    let direct = 0;
    let pushed = 0;
    SocketInput.of(sock).attach({
      push: (c) => {
        c.copy(dest, pos);
        pos += c.length;
        pushed += c.length;
      },
      // Alternate: 100 000 bytes through the reused buffer, then up to 50 000 in place.
      directTarget: () => (Math.floor(pos / 100_000) % 2 === 1 ? dest.subarray(pos, Math.min(total, pos + 50_000)) : undefined),
      pushedDirect: (target, n) => {
        expect(target.byteOffset).toBe(dest.byteOffset + pos);
        pos += n;
        direct += n;
      },
    });
    await done;
    expect(pos).toBe(total);
    expect(dest.equals(data)).toBe(true);
    expect(direct).toBeGreaterThan(0);
    expect(pushed).toBeGreaterThan(0);
  });

  it("delivers a direct read like any other bytes when the sink that asked for it has gone", async () => {
    const data = pattern(200_000, 3);
    const path = await server(data, 50_000, 20);
    const sock = SocketInput.connectWithUserBuffer({ path }, 4096);
    const done = ended(sock);
    const input = SocketInput.of(sock);
    const scratch = Buffer.alloc(200_000);
    let gave = 0;
    const got: Buffer[] = [];
    // Node picks the first read's buffer at connect, so the first read is pushed.
    // After it, this sink hands out a target, then leaves before the read into it
    // completes: those bytes must reach the next sink, not be lost.
    input.attach({
      push: (c) => got.push(Buffer.from(c)),
      directTarget: () => {
        gave++;
        input.detach();
        return scratch;
      },
      pushedDirect: () => {
        throw new Error("not the owner any more");
      },
    });
    await new Promise((r) => setTimeout(r, 60));
    input.attach(collector(got));
    await done;
    expect(gave).toBe(1);
    expect(Buffer.concat(got).equals(data)).toBe(true);
  });
});
