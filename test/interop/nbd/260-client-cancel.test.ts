/**
 * AbortSignal: a cancelled command rejects at once with CancelledError; its late
 * reply is consumed and dropped (no protocol error), and the connection goes on.
 */
import { describe, expect, it } from "vitest";
import { CancelledError } from "../../../src/errors.js";
import { NbdClient } from "../../../src/nbd/client.js";
import { Nbdkit } from "../../../src/nbdkit/nbdkit.js";
import { requireTool } from "../../support/tools.js";

describe("NbdClient cancellation", () => {
  it("rejects a cancelled read at once and drops its late reply", async () => {
    requireTool("nbdkit");
    const kit = await Nbdkit.start({ plugin: "memory", pluginArgs: ["1M"], filters: ["delay"], filterArgs: { rdelay: "1500ms" } });
    const c = await NbdClient.connect(kit.uri, { maxInFlight: 2 });
    try {
      await c.write(0, Buffer.from("abc"));
      const ac = new AbortController();
      const t0 = Date.now();
      const slow = c.read(0, 3, { signal: ac.signal });
      const other = c.read(0, 3);
      const queued = new AbortController();
      const neverSent = c.read(0, 3, { signal: queued.signal }); // waits for a slot (maxInFlight 2)
      setTimeout(() => {
        ac.abort();
        queued.abort();
      }, 20);
      await expect(slow).rejects.toBeInstanceOf(CancelledError);
      await expect(neverSent).rejects.toThrow(/before it was sent/);
      expect(Date.now() - t0).toBeLessThan(1000); // well under the 1.5 s the server holds the reply
      // the cancelled request still holds its slot until its reply arrives
      expect(c.inFlight).toBe(2);
      expect((await other).toString()).toBe("abc");
      expect((await c.read(0, 3)).toString()).toBe("abc");
      expect(c.inFlight).toBe(0);
      expect(c.isOpen).toBe(true);
      // an already-aborted signal never sends
      await expect(c.read(0, 3, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(CancelledError);
    } finally {
      await c.close();
      await kit.stop();
    }
  });

  it("cancels a connect in progress", async () => {
    requireTool("nbdkit");
    // the delay filter holds the handshake's GO for a while via delay-open
    const kit = await Nbdkit.start({ plugin: "memory", pluginArgs: ["1M"], filters: ["delay"], filterArgs: { "delay-open": "2" } });
    try {
      const t0 = Date.now();
      const e = await NbdClient.connect(kit.uri, { signal: AbortSignal.timeout(100) }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(CancelledError);
      expect(Date.now() - t0).toBeLessThan(1500);
      const e2 = await NbdClient.connect(kit.uri, { connectTimeoutMs: 100 }).catch((x: unknown) => x);
      expect(String(e2)).toMatch(/did not complete within 100 ms/);
    } finally {
      await kit.stop();
    }
  });
});
