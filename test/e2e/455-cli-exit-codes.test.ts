/**
 * The CLI's promises about exit codes and errors (README "Exit codes"), checked on
 * the built `sanbox` as a user runs it:
 *  - usage errors exit 2 from the real process (test/unit/cli walks every subcommand in-process);
 *  - under --json an error is a JSON document on stdout with the same exit code;
 *  - a daemon that is not running is one line naming the endpoint and the start command;
 *  - deleting a name that does not exist says so and exits 1;
 *  - a size is never changed silently: a bare number is bytes and must be whole blocks.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { runSanbox, startSanbox } from "../support/sanbox-cli.js";
import { tempDir } from "../support/tools.js";

describe("sanbox exit codes and errors", () => {
  let dir: string;
  let cleanup: () => void;
  let array: ArrayDaemon;
  beforeAll(async () => {
    ({ dir, cleanup } = tempDir("cli-exit-"));
    array = await startArrayDaemon(join(dir, "array"));
  }, 60_000);
  afterAll(async () => {
    await array.stop();
    cleanup();
  });

  it("the built binary exits 2 on usage errors at every depth (test/unit/cli walks the whole tree)", async () => {
    for (const cmd of [["no-such-command"], ["lun", "create"], ["backup", "run", "--no-such-flag"], ["lun", "delete", "x", "--no-such-flag"]]) {
      const r = await runSanbox(cmd);
      expect(r.exitCode, `sanbox ${cmd.join(" ")}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(/^error: /m);
    }
  }, 60_000);

  it("a bare number is bytes: 100 is refused naming the block size (not silently made 64 KiB); 65536 is 64 KiB exactly; -5G exits 2", async () => {
    const cli = (...args: string[]): ReturnType<typeof runSanbox> => runSanbox([...args, "--endpoint", array.rpcEndpoint]);
    const bare = await cli("lun", "create", "tiny", "100");
    expect(bare.exitCode, bare.stderr).toBe(2);
    expect(bare.stderr).toContain("size 100 (100 bytes) is not a multiple of the array's block size 64K (65536 bytes); a bare number is bytes: give a unit (100M, 100G) or a multiple, e.g. 64K");
    const odd = await cli("lun", "create", "tiny", "100K");
    expect(odd.exitCode, odd.stderr).toBe(2);
    expect(odd.stderr).toContain("e.g. 64K or 128K");
    expect((await cli("lun", "list", "--json")).stdout).not.toContain("tiny");
    const exact = await cli("lun", "create", "tiny", "65536", "--json");
    expect(exact.exitCode, exact.stderr).toBe(0);
    expect(JSON.parse(exact.stdout)).toMatchObject({ name: "tiny", sizeBytes: 65536 });
    const shrink = await cli("lun", "resize", "tiny", "1000");
    expect(shrink.exitCode, shrink.stderr).toBe(2);
    expect(shrink.stderr).toContain("LUN tiny's block size 64K");
    const negative = await cli("lun", "create", "neg", "-5G");
    expect(negative.exitCode, negative.stderr).toBe(2);
    expect(negative.stderr).toContain("size must be positive: -5G");
  }, 60_000);

  it("under --json a failure is {error:{code,message}} on stdout with the same exit code", async () => {
    const r = await runSanbox(["lun", "show", "no-such-lun", "--endpoint", array.rpcEndpoint, "--json"]);
    expect(r.exitCode).toBe(1);
    const doc = JSON.parse(r.stdout) as { error: { code: string; message: string } };
    expect(doc.error.code).toBe("NOT_FOUND");
    expect(doc.error.message).toMatch(/no-such-lun/);
    const usage = await runSanbox(["lun", "create", "--json"]);
    expect(usage.exitCode).toBe(2);
    expect((JSON.parse(usage.stdout) as { error: { code: string } }).error.code).toBe("INVALID_ARGUMENT");
  }, 60_000);

  it("a stopped daemon is one line: the endpoint, that nothing answers, and how to start it", async () => {
    const sock = join(dir, "nobody", "rpc.sock");
    const r = await runSanbox(["lun", "list", "--endpoint", `unix:${sock}`]);
    expect(r.exitCode).toBe(1);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`nothing answers at unix:${sock}`);
    expect(lines[0]).toContain("sanbox array serve");
    expect(r.stderr).not.toMatch(/No connection established|Resolution note/);
  }, 60_000);

  it("deleting a LUN, snapshot or host that does not exist says so and exits 1", async () => {
    for (const [what, args] of [
      ["LUN", ["lun", "delete", "nosuch"]],
      ["snapshot or group snapshot", ["snap", "delete", "nosuch"]],
      ["host", ["host", "delete", "nosuch"]],
    ] as const) {
      const r = await runSanbox([...args, "--endpoint", array.rpcEndpoint]);
      expect(r.exitCode, r.stderr).toBe(1);
      expect(r.stderr).toContain(`no ${what} named "nosuch"`);
      expect(r.stdout).not.toMatch(/deleted/);
    }
  }, 60_000);

  it("snap delete takes a group's name and deletes the whole group; a member names its group", async () => {
    const cli = (...args: string[]): ReturnType<typeof runSanbox> => runSanbox([...args, "--endpoint", array.rpcEndpoint]);
    expect((await cli("lun", "create", "g1", "1M")).exitCode).toBe(0);
    expect((await cli("lun", "create", "g2", "1M")).exitCode).toBe(0);
    const made = await cli("snap", "create", "g1", "g2", "--name", "nightly", "--json");
    expect(made.exitCode, made.stderr).toBe(0);
    const group = JSON.parse(made.stdout) as { groupSnapshotId: string; snapshots: { snapshotId: string; name: string }[] };
    const member = group.snapshots[0]!;
    const refused = await cli("snap", "delete", member.snapshotId);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(group.groupSnapshotId);
    const gone = await cli("snap", "delete", "nightly");
    expect(gone.exitCode, gone.stderr).toBe(0);
    expect(gone.stdout).toContain(`deleted group snapshot ${group.groupSnapshotId}`);
    const list = await cli("snap", "list", "--json");
    expect(list.stdout).not.toContain(group.groupSnapshotId);
  }, 60_000);

  it("the serve commands print their endpoints as JSON with --json", async () => {
    const nbd = await startSanbox(["nbd", "serve", "--memory", "1M", "--unix", join(dir, "n.sock"), "--json"]);
    expect(JSON.parse(nbd.firstLine)).toEqual({ uri: `nbd+unix:///?socket=${join(dir, "n.sock")}` });
    nbd.kill("SIGTERM");
    expect(await nbd.exited, nbd.stderr()).toEqual({ exitCode: 0, signal: undefined });
    const arr = await startSanbox(["array", "serve", "--data", join(dir, "array2"), "--json"]);
    const doc = JSON.parse(arr.firstLine) as { rpc: string; nbd: string };
    expect(doc.rpc).toBe(`unix:${join(dir, "array2", "rpc.sock")}`);
    expect(doc.nbd).toContain(join(dir, "array2", "nbd.sock"));
    arr.kill("SIGTERM");
    expect(await arr.exited, arr.stderr()).toEqual({ exitCode: 0, signal: undefined });
  }, 60_000);
});
