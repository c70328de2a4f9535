/**
 * The nbdkit launcher: start a real nbdkit, use it with a real client (nbdinfo),
 * stop it and check that no process is left; a bad plugin fails fast with
 * nbdkit's own message; a crash is told apart from a stop.
 */
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { NbdCommandError, ToolFailedError } from "../../../src/errors.js";
import { NbdClient } from "../../../src/nbd/client.js";
import { startFaultFront } from "../../../src/nbdkit/fault-front.js";
import { buildNbdkitArgs } from "../../../src/nbdkit/args.js";
import { Nbdkit } from "../../../src/nbdkit/nbdkit.js";
import { parseNbdUri } from "../../../src/nbd/uri.js";
import { requireTool, tempDir, tool } from "../../support/tools.js";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("nbdkit launcher", () => {
  it("builds nbdkit's command line in nbdkit's order", () => {
    const args = buildNbdkitArgs(
      { plugin: "memory", pluginArgs: { size: "1M" }, filters: ["delay", "error"], filterArgs: { rdelay: "1" }, readOnly: true, tls: "require", tlsPskFile: "/k.psk", threads: 4 },
      { kind: "unix", path: "/s.sock" },
    );
    expect(args).toEqual([
      "--foreground",
      "--exit-with-parent",
      "--unix",
      "/s.sock",
      "--readonly",
      "--tls=require",
      "--tls-psk=/k.psk",
      "--threads",
      "4",
      "--filter=delay",
      "--filter=error",
      "memory",
      "size=1M",
      "rdelay=1",
    ]);
  });

  it("starts nbdkit memory, serves nbdinfo, and stops leaving no process", async () => {
    requireTool("nbdkit");
    requireTool("nbdinfo");
    const kit = await Nbdkit.start({ plugin: "memory", pluginArgs: ["1M"] });
    try {
      const u = parseNbdUri(kit.uri);
      expect(u.transport.kind).toBe("unix");
      expect(kit.uri).toMatch(/^nbd\+unix:\/\/\/\?socket=/);
      const { stdout } = await tool("nbdinfo", ["--size", kit.uri]);
      expect(stdout.trim()).toBe(String(1024 * 1024));
      expect(alive(kit.pid)).toBe(true);
    } finally {
      const exit = await kit.stop();
      expect(exit.expected).toBe(true);
    }
    expect(alive(kit.pid)).toBe(false);
    const u = parseNbdUri(kit.uri);
    if (u.transport.kind === "unix") expect(existsSync(u.transport.path)).toBe(false);
  });

  it("fails fast with nbdkit's message for a bad plugin", async () => {
    requireTool("nbdkit");
    const t0 = Date.now();
    const err = await Nbdkit.start({ plugin: "no-such-plugin-xyz" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolFailedError);
    expect(String(err)).toMatch(/no-such-plugin-xyz/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it("tells an unexpected death apart from a stop", async () => {
    requireTool("nbdkit");
    const kit = await Nbdkit.start({ plugin: "memory", pluginArgs: ["1M"] });
    process.kill(kit.pid, "SIGABRT");
    const exit = await kit.exited;
    expect(exit.expected).toBe(false);
    expect(exit.signal).toBe("SIGABRT");
    const e = Nbdkit.unexpectedExitError(exit);
    expect(e?.message).toMatch(/nbdkit aborted \(killed by SIGABRT\)/);
    expect(await kit.stop()).toBe(exit);
  });

  it("listens on TCP when given a port", async () => {
    requireTool("nbdkit");
    const port = 20000 + (process.pid % 20000);
    const kit = await Nbdkit.start({ plugin: "null", pluginArgs: ["4096"], port, exportName: "e1" });
    try {
      expect(kit.uri).toBe(`nbd://127.0.0.1:${port}/e1`);
      const { stdout } = await tool("nbdinfo", ["--size", kit.uri]);
      expect(stdout.trim()).toBe("4096");
    } finally {
      await kit.stop();
    }
  });
});

describe("fault-injection front (nbd plugin + error/delay filters)", () => {
  it("injects EIO on reads while the error file exists, then recovers", async () => {
    requireTool("nbdkit");
    const tmp = tempDir();
    const upstream = await Nbdkit.start({ plugin: "memory", pluginArgs: ["1M"] });
    const errorFile = join(tmp.dir, "break-reads");
    const front = await startFaultFront({ upstream: upstream.uri, error: { errno: "EIO", file: errorFile, ops: ["pread"] }, delay: { write: "1ms" } });
    const c = await NbdClient.connect(front.uri);
    try {
      await c.write(0, Buffer.from("through the front"));
      expect((await c.read(0, 17)).toString()).toBe("through the front");
      writeFileSync(errorFile, "");
      const e = await c.read(0, 17).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(NbdCommandError);
      expect((e as NbdCommandError).errno).toBe("EIO");
      await c.write(512, Buffer.from("writes still work"));
      rmSync(errorFile);
      expect((await c.read(512, 17)).toString()).toBe("writes still work");
    } finally {
      await c.close();
      await front.stop();
      await upstream.stop();
      tmp.cleanup();
    }
  });
});

describe("URIs we print", () => {
  it("are accepted unchanged by nbdinfo, qemu-img and our client, for awkward export names", async () => {
    requireTool("nbdkit");
    requireTool("qemu-img");
    const name = "snap/S1/lun 0+ü";
    const kit = await Nbdkit.start({
      plugin: "memory",
      pluginArgs: ["2M"],
      filters: ["exportname"],
      filterArgs: { exportname: name, "exportname-strict": "true" },
      exportName: name,
    });
    try {
      expect(kit.uri).toContain("/snap/S1/lun%200%2B%C3%BC?socket=");
      expect((await tool("nbdinfo", ["--size", kit.uri])).stdout.trim()).toBe(String(2 * 1024 * 1024));
      expect((await tool("qemu-img", ["info", "--output=json", kit.uri])).stdout).toMatch(/"virtual-size": 2097152/);
      const c = await NbdClient.connect(kit.uri);
      expect(c.exportName).toBe(name);
      await c.close();
    } finally {
      await kit.stop();
    }
  });
});
