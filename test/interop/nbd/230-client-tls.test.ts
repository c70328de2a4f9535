/**
 * TLS-PSK through NBD_OPT_STARTTLS: our client to `nbdkit --tls=require --tls-psk`.
 * The right key works, a wrong key fails with a clear negotiation error, plaintext
 * is refused with NBD_REP_ERR_TLS_REQD; and nbdinfo accepts the URI we print.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidArgumentError, NbdNegotiationError } from "../../../src/errors.js";
import { NBD_REP_ERR_TLS_REQD } from "../../../src/nbd/constants.js";
import { NbdClient } from "../../../src/nbd/client.js";
import { formatNbdUri, parseNbdUri } from "../../../src/nbd/uri.js";
import { Nbdkit } from "../../../src/nbdkit/nbdkit.js";
import { requireTool, tempDir, tool } from "../../support/tools.js";

describe("NbdClient TLS-PSK ↔ nbdkit --tls=require", () => {
  const tmp = tempDir();
  const goodPsk = join(tmp.dir, "good.psk");
  const badPsk = join(tmp.dir, "bad.psk");
  let kit: Nbdkit;

  beforeAll(async () => {
    requireTool("nbdkit");
    writeFileSync(goodPsk, `alice:${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
    writeFileSync(badPsk, `alice:${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
    kit = await Nbdkit.start({ plugin: "memory", pluginArgs: ["1M"], tls: "require", tlsPskFile: goodPsk });
  });
  afterAll(async () => {
    await kit?.stop();
    tmp.cleanup();
  });

  it("prints an nbds+unix URI carrying the psk file", () => {
    expect(kit.uri).toMatch(/^nbds\+unix:\/\/\/\?socket=.*&tls-psk-file=/);
  });

  it("connects and does I/O with the right key", async () => {
    const c = await NbdClient.connect(kit.uri);
    try {
      await c.write(4096, Buffer.from("secret"));
      expect((await c.read(4096, 6)).toString()).toBe("secret");
    } finally {
      await c.close();
    }
  });

  it("also takes the key file and identity as options", async () => {
    const u = parseNbdUri(kit.uri);
    const plain = formatNbdUri({ tls: true, transport: u.transport, exportName: "" });
    const c = await NbdClient.connect(plain, { tlsPskFile: goodPsk, tlsIdentity: "alice" });
    await c.close();
    await expect(NbdClient.connect(plain)).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it("fails clearly with a wrong key", async () => {
    const u = parseNbdUri(kit.uri);
    const e = await NbdClient.connect({ ...u, tlsPskFile: badPsk }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NbdNegotiationError);
    expect(String(e)).toMatch(/TLS-PSK handshake failed|during the TLS-PSK handshake/);
  });

  it("is refused in plaintext with NBD_REP_ERR_TLS_REQD", async () => {
    const u = parseNbdUri(kit.uri);
    const e = await NbdClient.connect({ tls: false, transport: u.transport, exportName: "" }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NbdNegotiationError);
    expect((e as NbdNegotiationError).reply).toBe(NBD_REP_ERR_TLS_REQD);
    expect(String(e)).toMatch(/requires TLS/);
  });

  it("nbdinfo accepts our URI with a username", async () => {
    requireTool("nbdinfo");
    const u = parseNbdUri(kit.uri);
    const uri = formatNbdUri({ ...u, tlsUsername: "alice" });
    expect(uri).toMatch(/^nbds\+unix:\/\/alice@\/\?socket=/);
    const { stdout } = await tool("nbdinfo", ["--size", uri]);
    expect(stdout.trim()).toBe(String(1024 * 1024));
  });
});
