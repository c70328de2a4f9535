/**
 * `sanbox nbd serve` as a user runs it: the built CLI prints its URI on stdout,
 * real tools use that URI, and SIGTERM drains, removes the socket and exits 0.
 * Needs the build in dist/ (`npm test` builds before vitest).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { execa, type ResultPromise } from "execa";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { sanboxBin } from "../../../src/package-root.js";
import { NbdshSession } from "../../support/nbdsh-session.js";
import { tempDir, tool } from "../../support/tools.js";

const CLI = sanboxBin();
const MiB = 1024 * 1024;

const SERVE_OPTIONS = { reject: false, buffer: { stdout: false, stderr: true }, env: { SANBOX_LOG: "warn" } } as const;
type Serve = ResultPromise<typeof SERVE_OPTIONS>;

async function firstLine(p: Serve, ms = 15_000): Promise<string> {
  const rl = createInterface({ input: p.stdout });
  try {
    return await Promise.race([
      new Promise<string>((res) => rl.once("line", res)),
      p.then((r) => Promise.reject(new Error(`sanbox exited (${String(r.exitCode)}) before printing a URI: ${String(r.stderr)}`))),
      sleep(ms).then(() => Promise.reject(new Error("no URI line within the timeout"))),
    ]);
  } finally {
    rl.close();
  }
}

describe("sanbox nbd serve", () => {
  const running: Serve[] = [];
  let dir: string;
  let cleanup: () => void;

  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first with "npx tsc -p tsconfig.build.json" (npm test does this)`);
    ({ dir, cleanup } = tempDir("sanbox-cli-"));
    return () => cleanup();
  });
  afterEach(async () => {
    for (const p of running.splice(0)) {
      if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
      await p;
    }
  });

  const serve = (args: string[]): Serve => {
    const p = execa("node", [CLI, "nbd", "serve", ...args], SERVE_OPTIONS);
    running.push(p);
    return p;
  };

  it("serves a memory disk, prints its URI, and stops cleanly on SIGTERM", async () => {
    const sock = join(dir, "serve.sock");
    const p = serve(["--memory", "64M", "--unix", sock]);
    const uri = await firstLine(p);
    expect(uri).toBe(`nbd+unix:///?socket=${sock}`);

    const { stdout } = await tool("nbdinfo", ["--json", uri]);
    const info = JSON.parse(stdout) as { exports: { "export-size": number; is_read_only: boolean }[] };
    expect(info.exports[0]?.["export-size"]).toBe(64 * MiB);
    expect(info.exports[0]?.is_read_only).toBe(false);

    // A client still connected at SIGTERM is drained, not an obstacle to exiting.
    const h = await NbdshSession.open(uri);
    await h.ok({ op: "pwrite", off: MiB, hex: "cafe" });
    expect((await h.ok({ op: "pread", off: MiB, len: 2 })).hex).toBe("cafe");

    p.kill("SIGTERM");
    const r = await Promise.race([p, sleep(10_000).then(() => undefined)]);
    await h.close();
    expect(r?.exitCode).toBe(0);
    expect(existsSync(sock)).toBe(false);
  });

  it("serves a named, read-only export", async () => {
    const sock = join(dir, "ro.sock");
    const p = serve(["--memory", "1M", "--unix", sock, "--export", "lun/a", "--readonly"]);
    const uri = await firstLine(p);
    expect(uri).toContain("socket=");
    const { stdout } = await tool("nbdinfo", ["--json", uri]);
    const info = JSON.parse(stdout) as { exports: { "export-name": string; is_read_only: boolean }[] };
    expect(info.exports[0]).toMatchObject({ "export-name": "lun/a", is_read_only: true });
    p.kill("SIGTERM");
    expect((await p).exitCode).toBe(0);
  });

  it("--help describes the command", async () => {
    const top = await execa("node", [CLI, "--help"], { reject: false });
    expect(top.exitCode).toBe(0);
    expect(top.stdout).toMatch(/nbd/);
    const sub = await execa("node", [CLI, "nbd", "serve", "--help"], { reject: false });
    expect(sub.exitCode).toBe(0);
    expect(sub.stdout).toMatch(/--memory/);
    expect(sub.stdout).toMatch(/--unix/);
  });

  it("a usage error exits 2 with a message", async () => {
    const r = await execa("node", [CLI, "nbd", "serve"], { reject: false, env: { SANBOX_LOG: "warn" } });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/FILE|--memory/);
  });
});
