// Deleting a LUN whose deleted snapshot still backs a clone (RBD cannot remove a
// parent image): the LUN leaves the array's view at once, the clone keeps
// reading its data, the name is free again, and the image goes from the pool
// when the last clone does.
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { NbdClient } from "../../src/nbd/client.js";
import { field, startArrayDaemon, str, type ArrayDaemon } from "../support/array-daemon.js";
import { tempDir } from "../support/tools.js";

describe("deleting a parent LUN on the RBD backend", () => {
  let tmp: { dir: string; cleanup: () => void };
  let d: ArrayDaemon;
  const conf = (): string => inject("cephConf");
  const pool = (): string => inject("cephPool");

  beforeAll(async () => {
    tmp = tempDir("sanbox-rbd-070-");
    d = await startArrayDaemon(join(tmp.dir, "array"), ["--backend", "rbd", "--ceph-conf", conf(), "--pool", pool()]);
  });
  afterAll(async () => {
    await d?.stop();
    tmp?.cleanup();
  });

  const images = async (): Promise<string[]> => {
    const r = await execa("rbd", ["-c", conf(), "ls", pool(), "--format", "json"]);
    return JSON.parse(r.stdout) as string[];
  };

  it("hides the parent until its last clone is deleted", async () => {
    const parent = await d.json(["lun", "create", "par", "4M"]);
    const image = `sanbox-${str(parent, "lunId")}`;
    const c = await NbdClient.connect(d.uri("lun/par"));
    await c.write(0, Buffer.alloc(65536, 9));
    await c.flush();
    await c.close();
    await d.cli(["snap", "create", "par", "--name", "par-s"]);
    await d.cli(["clone", "par-s", "kid"]);
    await d.cli(["snap", "delete", "par-s"]);
    await d.cli(["lun", "delete", "par"]);

    const names = (await d.json(["lun", "list"])) as unknown[];
    expect(names.map((l) => field(l, "name"))).toEqual(["kid"]);
    expect((await d.cli(["lun", "show", "par"], { reject: false })).stderr).toMatch(/^sanbox: NOT_FOUND: /);
    expect(await images()).toContain(image);
    const k = await NbdClient.connect(d.uri("lun/kid"));
    expect((await k.read(0, 65536)).equals(Buffer.alloc(65536, 9))).toBe(true);
    await k.close();
    // The name is free again; the new LUN is a new image.
    const again = await d.json(["lun", "create", "par", "4M"]);
    expect(str(again, "lunId")).not.toBe(str(parent, "lunId"));

    await d.cli(["lun", "delete", "kid"]);
    expect(await images()).not.toContain(image);
    await d.cli(["lun", "delete", "par"]);
    expect(await d.json(["lun", "list"])).toEqual([]);
  }, 120_000);
});
