/**
 * LUN masking by TLS-PSK identity. Two hosts with their own psk files (created by
 * `sanbox host create --psk-file`). A LUN mapped to host A: A lists and opens it
 * with nbdinfo over STARTTLS; B neither lists nor opens it; a wrong key for A's
 * identity fails the handshake. A snapshot exported to B is visible to B only.
 * The local socket without TLS is the local host and sees everything.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startArrayDaemon, str, type ArrayDaemon } from "../support/array-daemon.js";
import { tempDir, tool } from "../support/tools.js";

describe("LUN masking by TLS-PSK identity", () => {
  let tmp: { dir: string; cleanup: () => void };
  let d: ArrayDaemon;
  let pskA = "";
  let pskB = "";
  const tlsUri = (identity: string, exportName: string, pskFile: string): string =>
    `nbds+unix://${identity}@/${exportName}?socket=${d.nbdSocket}&tls-psk-file=${pskFile}`;

  beforeAll(async () => {
    tmp = tempDir("sanbox-e2e-420-");
    d = await startArrayDaemon(join(tmp.dir, "array"));
    pskA = join(tmp.dir, "a.psk");
    pskB = join(tmp.dir, "b.psk");
    await d.cli(["host", "create", "hostA", "--psk-file", pskA]);
    await d.cli(["host", "create", "hostB", "--psk-file", pskB]);
    await d.cli(["lun", "create", "la", "4M"]);
    await d.cli(["lun", "create", "lb", "4M"]);
    await d.cli(["lun", "map", "la", "hostA"]);
    await d.cli(["lun", "map", "lb", "hostB"]);
  });
  afterAll(async () => {
    await d?.stop();
    tmp?.cleanup();
  });

  it("host A lists and opens only its own LUN", async () => {
    const list = await tool("nbdinfo", ["--list", tlsUri("hostA", "", pskA)]);
    expect(list.stdout).toContain('export="lun/la"');
    expect(list.stdout).not.toContain("lun/lb");
    const info = await tool("nbdinfo", [tlsUri("hostA", "lun/la", pskA)]);
    expect(info.stdout).toContain("export-size: 4194304");
    expect(info.stdout).toMatch(/with TLS/);
  });

  it("host B can neither list nor open host A's LUN", async () => {
    const list = await tool("nbdinfo", ["--list", tlsUri("hostB", "", pskB)]);
    expect(list.stdout).not.toContain("lun/la");
    expect(list.stdout).toContain("lun/lb");
    const open = await tool("nbdinfo", [tlsUri("hostB", "lun/la", pskB)], { reject: false });
    expect(open.exitCode).not.toBe(0);
  });

  it("a wrong PSK for host A's identity fails", async () => {
    const bad = join(tmp.dir, "bad.psk");
    writeFileSync(bad, `hostA:${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
    const r = await tool("nbdinfo", [tlsUri("hostA", "lun/la", bad)], { reject: false });
    expect(r.exitCode).not.toBe(0);
  });

  it("a snapshot exported to host B is visible to B, not to A; `sanbox export` prints a working URI", async () => {
    await d.cli(["snap", "create", "la", "--name", "la-s1"]);
    const uri = (await d.cli(["export", "la-s1", "--host", "hostB"])).stdout.trim();
    expect(uri).toMatch(/^nbds\+unix:\/\/hostB@\/snap\/snap-[0-9a-f]+\/la\?socket=/);
    const info = await tool("nbdinfo", [`${uri}&tls-psk-file=${pskB}`]);
    expect(info.stdout).toContain("is_read_only: true");
    const exportName = /@\/([^?]+)\?/.exec(uri)?.[1] ?? "";
    expect(exportName).toMatch(/^snap\/snap-[0-9a-f]+\/la$/);
    const listA = await tool("nbdinfo", ["--list", tlsUri("hostA", "", pskA)]);
    expect(listA.stdout).not.toContain(exportName);
    const viaA = await tool("nbdinfo", [tlsUri("hostA", exportName, pskA)], { reject: false });
    expect(viaA.exitCode).not.toBe(0);
    // The exported snapshot cannot be deleted while exported.
    const del = await d.cli(["snap", "delete", "la-s1"], { reject: false });
    expect(del.exitCode).toBe(1);
    expect(del.stderr).toMatch(/^sanbox: FAILED_PRECONDITION: /);
    const exps = await d.json(["exports", "--host", "hostB"]);
    expect(Array.isArray(exps) && exps.length).toBe(1);
    await d.cli(["unexport", "la-s1", "--host", "hostB"]);
    expect(await d.json(["exports"])).toEqual([]);
    await d.cli(["snap", "delete", "la-s1"]);
  });

  it("the local socket without TLS sees everything", async () => {
    const list = await tool("nbdinfo", ["--list", `nbd+unix:///?socket=${d.nbdSocket}`]);
    expect(list.stdout).toContain('export="lun/la"');
    expect(list.stdout).toContain('export="lun/lb"');
    const hosts = await d.json(["host", "list"]);
    if (!Array.isArray(hosts)) throw new Error("host list is not a list");
    expect(hosts.map((h: unknown) => str(h, "name")).sort()).toEqual(["hostA", "hostB"]);
  });
});
