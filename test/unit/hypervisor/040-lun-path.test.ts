/**
 * LunPath against our real NBD server on a Unix socket, stopped and started
 * again on the same socket with the same backend (an "array restart"): the path
 * reconnects and later I/O succeeds; past the limit it is FAILED with an error
 * naming it and the last error, and a request on a FAILED path tries once more;
 * a flush never covers writes made before a reconnect; every request has a
 * deadline; a revoked handle is fenced.
 */
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { SanboxError } from "../../../src/errors.js";
import { silentLogger } from "../../../src/log.js";
import type { ReadPiece } from "../../../src/nbd/backend.js";
import { MemoryBackend } from "../../../src/nbd/backends/memory-backend.js";
import { NbdClient } from "../../../src/nbd/client.js";
import { NbdServer } from "../../../src/nbd/server.js";
import { SingleExportProvider } from "../../../src/nbd/single-export.js";
import { LunPath, type LunPathOptions } from "../../../simulator/hypervisor/lun-path.js";
import { tempDir } from "../../support/tools.js";

/** Reads wait while `hold` is set (a frozen array). */
class HoldingBackend extends MemoryBackend {
  hold: Promise<void> | undefined;
  override async read(offset: number, length: number): Promise<Buffer> {
    if (this.hold !== undefined) await this.hold;
    return super.read(offset, length);
  }
  override async readSparse(offset: number, length: number): Promise<ReadPiece[]> {
    if (this.hold !== undefined) await this.hold;
    return super.readSparse(offset, length);
  }
}

const tmp = tempDir("sanbox-unit-lun-path-");
const socket = join(tmp.dir, "nbd.sock");
const uri = `nbd+unix:///?socket=${socket}`;
const backend = new HoldingBackend(1024 * 1024);
let server: NbdServer | undefined;
let path: LunPath | undefined;

async function up(): Promise<void> {
  server = new NbdServer({ log: silentLogger, provider: new SingleExportProvider(backend, "") });
  await server.listen({ unix: socket });
}
async function down(): Promise<void> {
  await server?.close();
  server = undefined;
}
function options(o: Partial<LunPathOptions> = {}): LunPathOptions {
  return { name: "datastore t (lun/t)", open: (ms) => NbdClient.connect(uri, { connectTimeoutMs: ms }), policy: { limit: 4, initialMs: 20, maxMs: 50 }, ioTimeoutMs: 2000, log: silentLogger, ...o };
}
async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}
async function code(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e: unknown) {
    if (e instanceof SanboxError) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error("expected a rejection");
}

afterEach(async () => {
  backend.hold = undefined;
  await path?.close();
  path = undefined;
  await down();
});

describe("LunPath", () => {
  it("reconnects after the server restarts; later I/O succeeds; faults counts the loss", async () => {
    await up();
    path = await LunPath.open(options({ policy: { limit: 50, initialMs: 20, maxMs: 50 } }));
    const h = path.handle();
    await h.write(0, Buffer.alloc(4096, 7), { fua: true });
    expect(path.faults).toBe(0);
    await down();
    await until("the path to notice", () => path?.state === "reconnecting");
    expect(path.faults).toBe(1);
    // A request made while reconnecting waits for the path.
    const pending = h.read(0, 4096);
    await sleep(100);
    await up();
    expect((await pending).equals(Buffer.alloc(4096, 7))).toBe(true);
    expect(path.state).toBe("connected");
    expect(path.status().lastError).toMatch(/CONNECTION_CLOSED/);
  });

  it("gives up after `limit` attempts: FAILED, UNAVAILABLE naming the path and the last error; a later request tries once more", async () => {
    await up();
    path = await LunPath.open(options());
    await down();
    await until("FAILED", () => path?.state === "failed");
    expect(path.status().attempts).toBe(4);
    const e = await code(path.handle().read(0, 512));
    expect(e.code).toBe("UNAVAILABLE");
    expect(e.message).toContain("datastore t (lun/t) is down");
    expect(e.message).toMatch(/last error: .*(ENOENT|ECONNREFUSED)/);
    await up();
    expect((await path.handle().read(0, 512)).length).toBe(512);
    expect(path.state).toBe("connected");
  });

  it("a flush after a reconnect reports (once) the writes it cannot cover", async () => {
    await up();
    path = await LunPath.open(options({ policy: { limit: 50, initialMs: 20, maxMs: 50 } }));
    const h = path.handle();
    await h.write(8192, Buffer.alloc(512, 1)); // no FUA, no flush
    await down();
    await until("the path to notice", () => path?.state === "reconnecting");
    await up();
    const e = await code(h.flush());
    expect(e.code).toBe("CONNECTION_CLOSED");
    expect(e.message).toMatch(/not flushed and may be lost/);
    await h.flush();
    // A handle that flushed before the loss has nothing to report.
    const clean = path.handle();
    await clean.write(0, Buffer.alloc(512, 2));
    await clean.flush();
    await down();
    await until("the path to notice", () => path?.state === "reconnecting");
    await up();
    await clean.flush();
  });

  it("a request that gets no answer fails with TIMEOUT within the deadline; the path lives on", async () => {
    await up();
    path = await LunPath.open(options({ ioTimeoutMs: 300 }));
    let release = (): void => undefined;
    backend.hold = new Promise<void>((r) => (release = r));
    const t0 = Date.now();
    const e = await code(path.handle().read(0, 512));
    const took = Date.now() - t0;
    expect(e.code).toBe("TIMEOUT");
    expect(e.message).toMatch(/read did not complete within 300 ms \(--io-timeout\)/);
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(2000);
    expect(path.faults).toBe(0); // a read that timed out changed nothing
    backend.hold = undefined;
    release();
    expect((await path.handle().read(0, 512)).length).toBe(512);
    expect(path.state).toBe("connected");
  });

  it("a revoked handle is fenced; other handles go on", async () => {
    await up();
    path = await LunPath.open(options());
    const a = path.handle();
    const b = path.handle();
    a.revoke();
    expect((await code(a.write(0, Buffer.alloc(512)))).code).toBe("CONNECTION_CLOSED");
    await b.write(0, Buffer.alloc(512, 3), { fua: true });
    expect((await b.read(0, 512))[0]).toBe(3);
  });

  it("a closed path refuses requests and stops reconnecting", async () => {
    await up();
    path = await LunPath.open(options({ policy: { limit: 1000, initialMs: 10, maxMs: 10 } }));
    await down();
    await until("the path to notice", () => path?.state === "reconnecting");
    await path.close();
    expect(path.state).toBe("closed");
    expect((await code(path.handle().read(0, 1))).code).toBe("CONNECTION_CLOSED");
  });
});
