/**
 * Request limits against the real daemon (docs/contract.md "Limits", issue 17):
 * an over-long field is INVALID_ARGUMENT naming the field and its limit, an
 * over-large message RESOURCE_EXHAUSTED, each answered at once, and the next
 * call on the same connection works. Before, an 80 KB LUN name or a 400 KB page
 * token was echoed into the error's trailers, the reply never arrived, and the
 * CLI exited 13 without a word.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SanboxError } from "../../src/errors.js";
import { connectArray, type ArrayClient } from "../../src/rpc/array-client.js";
import { startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { tempDir } from "../support/tools.js";

async function failure(p: Promise<unknown>): Promise<SanboxError> {
  try {
    await p;
  } catch (e: unknown) {
    if (e instanceof SanboxError) return e;
    throw e;
  }
  throw new Error("expected the call to fail");
}

describe("request limits over gRPC", () => {
  let tmp: { dir: string; cleanup: () => void };
  let d: ArrayDaemon;
  let rpc: ArrayClient;

  beforeAll(async () => {
    tmp = tempDir("sanbox-e2e-445-");
    d = await startArrayDaemon(join(tmp.dir, "array"));
    rpc = connectArray({ endpoint: d.rpcEndpoint });
  });
  afterAll(async () => {
    rpc.close();
    await d.stop();
    tmp.cleanup();
  });

  it("the CLI reports an 80 KB LUN name as a usage error, in one short line", async () => {
    const r = await d.cli(["lun", "create", "y".repeat(80_000), "1M"], { reject: false });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim()).toBe("sanbox: INVALID_ARGUMENT: name is 80000 bytes; the limit is 128 bytes");
    const j = await d.cli(["lun", "create", "y".repeat(80_000), "1M", "--json"], { reject: false });
    expect(JSON.parse(j.stdout)).toEqual({ error: { code: "INVALID_ARGUMENT", message: "name is 80000 bytes; the limit is 128 bytes" } });
  });

  it("a 400 KB page token is INVALID_ARGUMENT, and the same connection serves the next call", async () => {
    const e = await failure(rpc.listLuns({ startingToken: "p1.".padEnd(400_000, "A") }, { timeoutMs: 5000 }));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.message).toBe("starting_token is 400000 bytes; the limit is 4096 bytes");
    expect((await rpc.listLuns({}, { timeoutMs: 5000 })).luns).toEqual([]);
  });

  it("a token within the limit but unknown is ABORTED, quoting a bounded prefix", async () => {
    const e = await failure(rpc.listLuns({ startingToken: `x${"é".repeat(2000)}` }, { timeoutMs: 5000 }));
    expect(e.code).toBe("ABORTED");
    expect(e.message.length).toBeLessThan(200);
    expect(e.message).toContain("(2001 characters)");
  });

  it("names 1 MiB and 5 MiB long are RESOURCE_EXHAUSTED at once, and the connection lives on", async () => {
    for (const size of [1024 * 1024 + 1, 5 * 1024 * 1024]) {
      const t0 = Date.now();
      const e = await failure(rpc.createLun({ name: "n".repeat(size), sizeBytes: 1 }, { timeoutMs: 10_000 }));
      expect(e.code).toBe("RESOURCE_EXHAUSTED");
      expect(Date.now() - t0).toBeLessThan(5000);
      expect((await rpc.getArrayInfo({}, { timeoutMs: 5000 })).vendor).toBe("sanbox");
    }
  });

  it("a repeated field past its limit is refused before any work: no snapshot, no LUN lookup", async () => {
    const lun = await rpc.createLun({ name: "a", sizeBytes: 1 << 20 });
    const e = await failure(rpc.createSnapshot({ name: "g", lunIds: Array.from({ length: 65 }, () => lun.lunId) }));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.message).toBe("lun_ids has 65 entries; the limit is 64");
    expect((await rpc.listSnapshots({})).snapshots).toEqual([]);
    await rpc.deleteLun({ lunId: lun.lunId });
  });
});
