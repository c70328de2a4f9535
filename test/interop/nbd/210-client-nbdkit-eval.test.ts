/**
 * Our client against `nbdkit eval` with scripted behaviour: extents that come back
 * one at a time (so `extents()` must loop), and injected errors (so one command
 * fails with its errno while the connection, and the next command, live on).
 * Also negotiation failures against real nbdkit: unknown export, refused context.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdCommandError, NbdNegotiationError } from "../../../src/errors.js";
import { NBD_REP_ERR_UNKNOWN, NBD_STATE_HOLE, NBD_STATE_ZERO } from "../../../src/nbd/constants.js";
import { NbdClient, type StatusExtent } from "../../../src/nbd/client.js";
import { Nbdkit } from "../../../src/nbdkit/nbdkit.js";
import { requireTool } from "../../support/tools.js";

// One 4 KiB extent per call: every third block is a hole, the rest data.
const EXTENTS = 'i=$(( $4 / 4096 )); if [ $(( i % 3 )) -eq 0 ]; then t=hole,zero; else t=0; fi; echo $(( i * 4096 )) 4096 $t';
// Reads return 'a's, except that the block at 64 KiB fails with EIO.
const PREAD = 'if [ $4 -eq 65536 ]; then echo "EIO injected read failure" >&2; exit 1; fi; head -c $3 /dev/zero | tr "\\0" a';
// Writes at 128 KiB fail with ENOSPC; others are accepted and dropped.
const PWRITE = 'cat >/dev/null; if [ $4 -eq 131072 ]; then echo "ENOSPC injected full disk" >&2; exit 1; fi';

describe("NbdClient ↔ nbdkit eval (scripted extents and errors)", () => {
  let kit: Nbdkit;

  beforeAll(async () => {
    requireTool("nbdkit");
    kit = await Nbdkit.start({
      plugin: "eval",
      pluginArgs: { get_size: "echo 1M", pread: PREAD, pwrite: PWRITE, extents: EXTENTS, can_write: "exit 0", can_extents: "exit 0" },
    });
  });
  afterAll(async () => {
    await kit?.stop();
  });

  it("extents() loops BLOCK_STATUS over the range and clips to it", async () => {
    const c = await NbdClient.connect(kit.uri, { metaContexts: ["base:allocation"] });
    try {
      const all: StatusExtent[] = [];
      for await (const e of c.extents("base:allocation")) all.push(e);
      expect(all).toHaveLength(256);
      all.forEach((e, i) => {
        expect(e.offset).toBe(i * 4096);
        expect(e.length).toBe(4096);
        expect(e.flag).toBe(i % 3 === 0 ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0);
      });
      const part: StatusExtent[] = [];
      for await (const e of c.extents("base:allocation", 1000, 10000)) part.push(e);
      expect(part).toEqual([
        { offset: 1000, length: 3096, flag: NBD_STATE_HOLE | NBD_STATE_ZERO },
        { offset: 4096, length: 4096, flag: 0 },
        { offset: 8192, length: 2808, flag: 0 },
      ]);
    } finally {
      await c.close();
    }
  });

  for (const structuredReplies of [true, false]) {
    it(`fails only the command that failed, with its errno (structured replies: ${structuredReplies})`, async () => {
      const c = await NbdClient.connect(kit.uri, { structuredReplies });
      try {
        expect(c.structuredReplies).toBe(structuredReplies);
        const e = await c.read(65536, 4096).catch((x: unknown) => x);
        expect(e).toBeInstanceOf(NbdCommandError);
        expect((e as NbdCommandError).errno).toBe("EIO");
        expect((e as NbdCommandError).code).toBe("NBD_COMMAND");
        // next command on the same connection succeeds
        expect((await c.read(0, 4096)).equals(Buffer.alloc(4096, "a"))).toBe(true);
        // pipelined: only the one bad request fails
        const results = await Promise.allSettled(Array.from({ length: 32 }, (_, i) => c.read(i * 4096, 4096)));
        results.forEach((r, i) => {
          if (i === 16) {
            expect(r.status).toBe("rejected");
          } else {
            expect(r.status).toBe("fulfilled");
          }
        });
        const w = await c.write(131072, Buffer.alloc(512)).catch((x: unknown) => x);
        expect((w as NbdCommandError).errno).toBe("ENOSPC");
        await c.write(0, Buffer.alloc(512));
        expect(c.isOpen).toBe(true);
      } finally {
        await c.close();
      }
    });
  }

  it("fails clearly when a requested meta context is not granted", async () => {
    const e = await NbdClient.connect(kit.uri, { metaContexts: ["base:allocation", "qemu:dirty-bitmap:nope"] }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NbdNegotiationError);
    expect(String(e)).toMatch(/did not grant meta context 'qemu:dirty-bitmap:nope'/);
  });
});

describe("negotiation errors from nbdkit", () => {
  it("names the export and the reply when the export does not exist", async () => {
    requireTool("nbdkit");
    const kit = await Nbdkit.start({
      plugin: "memory",
      pluginArgs: ["1M"],
      filters: ["exportname"],
      filterArgs: { exportname: "good", "exportname-strict": "true", "exportname-list": "explicit" },
      exportName: "good",
    });
    try {
      const ok = await NbdClient.connect(kit.uri);
      expect(ok.exportName).toBe("good");
      await ok.close();
      const bad = kit.uri.replace("/good?", "/bad?");
      const e = await NbdClient.connect(bad).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(NbdNegotiationError);
      expect((e as NbdNegotiationError).reply).toBe(NBD_REP_ERR_UNKNOWN);
      expect(String(e)).toMatch(/export 'bad' not found \(NBD_REP_ERR_UNKNOWN\)/);
      expect(await NbdClient.list(kit.uri)).toEqual([{ name: "good", description: "" }]);
    } finally {
      await kit.stop();
    }
  });
});
