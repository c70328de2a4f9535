/**
 * The array's CLI, command by command, against a running daemon: what a person
 * at a shell types. Human output is checked loosely, --json output exactly.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdClient } from "../../src/nbd/client.js";
import { field, startArrayDaemon, str, type ArrayDaemon } from "../support/array-daemon.js";
import { tempDir } from "../support/tools.js";

describe("sanbox array client commands", () => {
  let tmp: { dir: string; cleanup: () => void };
  let d: ArrayDaemon;
  beforeAll(async () => {
    tmp = tempDir("sanbox-e2e-450-");
    d = await startArrayDaemon(join(tmp.dir, "array"));
  });
  afterAll(async () => {
    await d?.stop();
    tmp?.cleanup();
  });

  it("array info and pool", async () => {
    const info = await d.json(["array", "info"]);
    expect(info).toMatchObject({ vendor: "sanbox", contractVersion: "1.0.0", capabilities: { groupSnapshots: true, cbtFromDeletedBase: true } });
    expect((await d.cli(["array", "info"])).stdout).toMatch(/^vendor:\s+sanbox$/m);
    await d.cli(["lun", "create", "p1", "1G"]);
    expect(await d.json(["pool"])).toMatchObject({ provisionedBytes: 2 ** 30, lunCount: 1 });
  });

  it("lun create | list | show | resize | delete", async () => {
    const l = await d.json(["lun", "create", "web", "10M"]);
    expect(l).toMatchObject({ name: "web", sizeBytes: 10 * 2 ** 20 });
    expect(str(l, "naa")).toMatch(/^naa\.6[0-9a-f]{31}$/);
    expect((await d.cli(["lun", "list"])).stdout).toMatch(/^web\s+lun-[0-9a-f]+\s+10\.0 MiB/m);
    expect(await d.json(["lun", "show", str(l, "lunId")])).toMatchObject({ name: "web" });
    expect(await d.json(["lun", "resize", "web", "20M"])).toMatchObject({ sizeBytes: 20 * 2 ** 20 });
    await d.cli(["lun", "delete", "web"]);
    const r = await d.cli(["lun", "show", "web"], { reject: false });
    expect(r.stderr).toMatch(/^sanbox: NOT_FOUND: /);
  });

  it("host create | list | delete, lun map | unmap", async () => {
    const h = await d.json(["host", "create", "esx1"]);
    expect(str(h, "psk")).toMatch(/^esx1:[0-9a-f]{64}$/);
    await d.cli(["lun", "create", "ds", "8M"]);
    await d.cli(["lun", "map", "ds", "esx1"]);
    expect(await d.json(["lun", "show", "ds"])).toMatchObject({ mappedHostIds: [str(h, "hostId")] });
    const del = await d.cli(["host", "delete", "esx1"], { reject: false });
    expect(del.stderr).toMatch(/^sanbox: FAILED_PRECONDITION: /);
    await d.cli(["lun", "unmap", "ds", "esx1"]);
    await d.cli(["host", "delete", "esx1"]);
    expect(await d.json(["host", "list"])).toEqual([]);
  });

  it("snap create | list | show | delete, diff, revert, clone, export", async () => {
    await d.cli(["lun", "create", "vm", "4M"]);
    const c = await NbdClient.connect(d.uri("lun/vm"));
    await c.write(0, Buffer.alloc(65536, 7));
    await c.flush();
    await d.cli(["snap", "create", "vm", "--name", "t1"]);
    await c.write(65536, Buffer.alloc(65536, 8));
    await c.flush();
    const diff = await d.json(["diff", "t1", "live", "--lun", "vm"]);
    expect(field(diff, "extents")).toEqual([{ offset: 65536, length: 65536, type: "DATA" }]);
    expect((await d.cli(["diff", "t1", "live", "--lun", "vm"])).stdout).toMatch(/1 extent\(s\)/);
    await d.cli(["revert", "vm", "t1"]);
    expect((await c.read(65536, 65536)).equals(Buffer.alloc(65536))).toBe(true);
    await c.close();
    const clone = await d.json(["clone", "t1", "vm-copy"]);
    expect(clone).toMatchObject({ name: "vm-copy", sizeBytes: 4 * 2 ** 20 });
    const cc = await NbdClient.connect(d.uri("lun/vm-copy"));
    expect((await cc.read(0, 65536)).equals(Buffer.alloc(65536, 7))).toBe(true);
    await cc.close();
    const snaps = await d.json(["snap", "list", "--lun", "vm"]);
    expect(Array.isArray(snaps) && snaps.length).toBe(1);
    expect(await d.json(["snap", "show", "t1"])).toMatchObject({ name: "t1", lunName: "vm" });
    const uri = (await d.cli(["export", "t1"])).stdout.trim();
    expect(uri).toMatch(/^nbd\+unix:\/\/\/snap\/snap-[0-9a-f]+\/vm\?socket=/);
    const sc = await NbdClient.connect(uri);
    expect((await sc.read(0, 65536)).equals(Buffer.alloc(65536, 7))).toBe(true);
    await sc.close();
    const group = await d.json(["snap", "create", "vm", "vm-copy", "--name", "both"]);
    const gid = str(group, "groupSnapshotId");
    expect(gid).toMatch(/^grp-/);
    await d.cli(["snap", "delete", gid]);
    expect(await d.json(["snap", "list", "--group", gid])).toEqual([]);
  });

  it("--help works everywhere", async () => {
    for (const args of [["lun", "--help"], ["snap", "create", "--help"], ["diff", "--help"], ["array", "serve", "--help"], ["export", "--help"]]) {
      const r = await d.cli(args);
      expect(r.stdout).toMatch(/^Usage: /m);
    }
  });
});
