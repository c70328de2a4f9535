// The datastore on an NBD export through our client: read-write, and read-only (as a snapshot export is),
// plus the CLI over the NBD URI.
import { Command } from "commander";
import { afterEach, describe, expect, it, vi } from "vitest";
import { NbdDevice } from "../../../src/nbd/nbd-device.js";
import { Datastore } from "../../../src/datastore/datastore.js";
import { fsck } from "../../../src/datastore/fsck.js";
import { openBlockDevice } from "../../../src/datastore/open-device.js";
import { registerDatastore } from "../../../cli/datastore-commands.js";
import { NbdClient } from "../../../src/nbd/client.js";
import { startServer, type RunningServer } from "../../support/nbd-server.js";

let srv: RunningServer | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await srv?.stop();
  srv = undefined;
});

describe("datastore over NBD", () => {
  it("formats, writes, reopens read-only and lists through the CLI", async () => {
    srv = await startServer({ size: 16 * 1024 * 1024 });
    const dev = new NbdDevice(await NbdClient.connect(srv.uri));
    const ds = await Datastore.format(dev, { label: "nbd" });
    await ds.mkdir("/vm1");
    await ds.writeFile("/vm1/a-flat.vmdk", Buffer.alloc(200 * 1024, 3));
    await ds.trim("/vm1/a-flat.vmdk", 0, 64 * 1024);
    expect((await ds.extentMap("/vm1/a-flat.vmdk")).map((x) => x.fileOffset)).toEqual([65536]);
    await dev.close();

    const ro = await openBlockDevice(srv.uri, { readOnly: true });
    expect((await fsck(ro)).ok).toBe(true);
    const again = await Datastore.open(ro, { readOnly: true });
    const data = await again.readFile("/vm1/a-flat.vmdk");
    expect(data.subarray(0, 65536).every((b) => b === 0)).toBe(true);
    expect(data.subarray(65536).every((b) => b === 3)).toBe(true);
    await ro.close?.();

    let out = "";
    vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      out += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
      return true;
    });
    const program = new Command("sanbox").exitOverride();
    registerDatastore(program);
    await program.parseAsync(["node", "sanbox", "ds", "ls", srv.uri, "-R", "--json"]);
    expect((JSON.parse(out) as { path: string }[]).map((e) => e.path)).toEqual(["/vm1", "/vm1/a-flat.vmdk"]);
  });
});
