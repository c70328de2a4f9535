/**
 * NbdClientPool: several connections when nbdkit advertises multi-conn (memory
 * does), I/O spread over them and consistent across them; one connection, with a
 * note saying why, when the server does not advertise it.
 */
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { NbdClientPool } from "../../../src/nbd/client-pool.js";
import { Nbdkit } from "../../../src/nbdkit/nbdkit.js";
import { requireTool } from "../../support/tools.js";

describe("NbdClientPool", () => {
  it("spreads I/O over multi-conn connections", async () => {
    requireTool("nbdkit");
    const kit = await Nbdkit.start({ plugin: "memory", pluginArgs: ["8M"], filters: ["delay"], filterArgs: { wdelay: "2ms" } });
    const pool = await NbdClientPool.connect(kit.uri, 4);
    try {
      expect(pool.canMultiConn).toBe(true);
      expect(pool.connections).toBe(4);
      expect(pool.note).toBeUndefined();
      const blocks = Array.from({ length: 64 }, (_, i) => ({ off: i * 65536, data: randomBytes(65536) }));
      const writes = blocks.map((b) => pool.write(b.off, b.data));
      // least-loaded dispatch: 64 requests over 4 connections
      expect(pool.clients.map((c) => c.inFlight)).toEqual([16, 16, 16, 16]);
      await Promise.all(writes);
      await pool.flush();
      const reads = await Promise.all(blocks.map((b) => pool.read(b.off, b.data.length)));
      reads.forEach((r, i) => expect(r.equals(blocks[i]?.data ?? Buffer.alloc(0))).toBe(true));
      // every connection sees every other connection's writes
      for (const c of pool.clients) expect((await c.read(65536 * 63, 65536)).equals(blocks[63]?.data ?? Buffer.alloc(0))).toBe(true);
    } finally {
      await pool.close();
      await kit.stop();
    }
  });

  it("keeps one connection and says so without multi-conn", async () => {
    requireTool("nbdkit");
    const kit = await Nbdkit.start({ plugin: "memory", pluginArgs: ["1M"], filters: ["multi-conn"], filterArgs: { "multi-conn-mode": "disable" } });
    const pool = await NbdClientPool.connect(kit.uri, 4);
    try {
      expect(pool.canMultiConn).toBe(false);
      expect(pool.connections).toBe(1);
      expect(pool.note).toMatch(/does not advertise NBD_FLAG_CAN_MULTI_CONN: using 1 connection instead of 4/);
      await pool.write(0, Buffer.from("one"));
      expect((await pool.read(0, 3)).toString()).toBe("one");
    } finally {
      await pool.close();
      await kit.stop();
    }
  });
});
