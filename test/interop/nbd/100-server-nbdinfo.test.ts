import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type RunningServer } from "../../support/nbd-server.js";
import { tool } from "../../support/tools.js";

describe("our server, inspected by nbdinfo", () => {
  let s: RunningServer;
  beforeAll(async () => {
    s = await startServer({ size: 16 * 1024 * 1024, exportName: "disk0" });
  });
  afterAll(async () => s.stop());

  it("reports size, flags and block sizes in --json", async () => {
    const { stdout } = await tool("nbdinfo", ["--json", s.uri]);
    const info = JSON.parse(stdout) as { exports: { "export-size": number; "can_trim": boolean; "can_multi_conn": boolean; "is_read_only": boolean; "can_fua": boolean; "can_zero": boolean; "can_fast_zero": boolean; "can_cache": boolean; "block_size_preferred"?: number; "export-name": string }[]; protocol: string };
    const e = info.exports[0];
    expect(info.protocol).toBe("newstyle-fixed");
    expect(e?.["export-size"]).toBe(16 * 1024 * 1024);
    expect(e?.["export-name"]).toBe("disk0");
    expect(e?.is_read_only).toBe(false);
    expect(e?.can_trim).toBe(true);
    expect(e?.can_fua).toBe(true);
    expect(e?.can_zero).toBe(true);
    expect(e?.can_fast_zero).toBe(true);
    expect(e?.can_cache).toBe(true);
    expect(e?.can_multi_conn).toBe(true);
    expect(e?.block_size_preferred).toBe(4096);
  });

  it("lists the export with --list", async () => {
    const { stdout } = await tool("nbdinfo", ["--list", "--json", `nbd+unix://?socket=${s.socket}`]);
    const info = JSON.parse(stdout) as { exports: { "export-name": string; description?: string }[] };
    expect(info.exports.map((e) => e["export-name"])).toEqual(["disk0"]);
  });

  it("maps allocation with --map after writes", async () => {
    await s.backend.write(1024 * 1024, Buffer.alloc(65536, 1), { fua: false });
    const { stdout } = await tool("nbdinfo", ["--map", "--json", s.uri]);
    const map = JSON.parse(stdout) as { offset: number; length: number; type: number }[];
    expect(map).toEqual([
      { offset: 0, length: 1024 * 1024, type: 3, description: "hole,zero" },
      { offset: 1024 * 1024, length: 65536, type: 0, description: "data" },
      { offset: 1024 * 1024 + 65536, length: 16 * 1024 * 1024 - 1024 * 1024 - 65536, type: 3, description: "hole,zero" },
    ]);
  });

  it("fails cleanly for an unknown export name", async () => {
    const r = await tool("nbdinfo", [`nbd+unix:///nope?socket=${s.socket}`], { reject: false });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/No such file|not found/i); // libnbd maps NBD_REP_ERR_UNKNOWN to ENOENT
  });
});
