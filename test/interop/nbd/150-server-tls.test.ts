/**
 * TLS-PSK via STARTTLS: libnbd (GnuTLS) against our server (node:tls), with the
 * nbdkit psk file format.
 */
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePskFile } from "../../../src/nbd/tls-psk.js";
import { startServer, type RunningServer } from "../../support/nbd-server.js";
import { tempDir, tool } from "../../support/tools.js";

const SIZE = 1024 * 1024;

describe("TLS-PSK", () => {
  let dir: string;
  let cleanup: () => void;
  let goodPsk: string;
  let badPsk: string;
  let unknownUserPsk: string;
  let required: RunningServer;
  let optional: RunningServer;

  // libnbd 1.14 takes the TLS username from the URI userinfo; it does not know `tls-username=`.
  const tlsUri = (s: RunningServer, psk: string, user = "alice"): string => `nbds+unix://${user}@/?socket=${s.socket}&tls-psk-file=${psk}`;
  const plainUri = (s: RunningServer): string => `nbd+unix:///?socket=${s.socket}`;

  beforeAll(async () => {
    ({ dir, cleanup } = tempDir("sanbox-tls-"));
    const key = randomBytes(32).toString("hex");
    goodPsk = join(dir, "good.psk");
    badPsk = join(dir, "bad.psk");
    unknownUserPsk = join(dir, "mallory.psk");
    writeFileSync(goodPsk, `alice:${key}\n`);
    writeFileSync(badPsk, `alice:${randomBytes(32).toString("hex")}\n`);
    writeFileSync(unknownUserPsk, `mallory:${key}\n`);
    const psk = parsePskFile(`# server table\nalice:${key}\nbob:${randomBytes(16).toString("hex")}\n`);
    required = await startServer({ size: SIZE, tls: "require", psk });
    optional = await startServer({ size: SIZE, tls: "on", psk });
  });
  afterAll(async () => {
    await required.stop();
    await optional.stop();
    cleanup();
  });

  it("serves a TLS client that knows the key", async () => {
    const { stdout } = await tool("nbdinfo", ["--json", tlsUri(required, goodPsk)]);
    const info = JSON.parse(stdout) as { exports: { "export-size": number }[] };
    expect(info.exports[0]?.["export-size"]).toBe(SIZE);
  });

  it("moves data over TLS (nbdcopy in and out)", async () => {
    const src = join(dir, "src.img");
    const blob = randomBytes(SIZE);
    writeFileSync(src, blob);
    await tool("nbdcopy", [src, tlsUri(required, goodPsk)]);
    expect((await required.backend.read(0, SIZE)).equals(blob)).toBe(true);
    const out = join(dir, "out.img");
    await tool("nbdcopy", [tlsUri(required, goodPsk), out]);
    expect(readFileSync(out).equals(blob)).toBe(true);
  });

  it("refuses a client with the wrong key", async () => {
    const r = await tool("nbdinfo", [tlsUri(required, badPsk)], { reject: false });
    expect(r.exitCode).not.toBe(0);
  });

  it("refuses an identity the server does not know", async () => {
    const r = await tool("nbdinfo", [tlsUri(required, unknownUserPsk, "mallory")], { reject: false });
    expect(r.exitCode).not.toBe(0);
  });

  it("refuses a plain client when TLS is required", async () => {
    const r = await tool("nbdinfo", [plainUri(required)], { reject: false });
    expect(r.exitCode).not.toBe(0);
    // Every option but STARTTLS is answered NBD_REP_ERR_TLS_REQD, which libnbd reports as ENOTSUP.
    expect(r.stderr).toMatch(/Operation not supported|TLS/);
    const list = await tool("nbdinfo", ["--list", plainUri(required)], { reject: false });
    expect(list.exitCode).not.toBe(0);
  });

  it("keeps serving TLS clients after the refusals", async () => {
    const { stdout } = await tool("nbdinfo", ["--size", tlsUri(required, goodPsk)]);
    expect(stdout.trim()).toBe(String(SIZE));
  });

  it('with tls "on", serves both plain and TLS clients', async () => {
    const plain = await tool("nbdinfo", ["--size", plainUri(optional)]);
    expect(plain.stdout.trim()).toBe(String(SIZE));
    const secure = await tool("nbdinfo", ["--size", tlsUri(optional, goodPsk)]);
    expect(secure.stdout.trim()).toBe(String(SIZE));
    const wrong = await tool("nbdinfo", ["--size", tlsUri(optional, badPsk)], { reject: false });
    expect(wrong.exitCode).not.toBe(0);
  });
});
