/**
 * Plain and group snapshots share one name space (docs/contract.md "Names",
 * issue 17): after a group snapshot g of LUNs a and b, `snap create a --name g`
 * is ALREADY_EXISTS, and after a plain snapshot p of a, a group p of a and b is
 * too. Checked with the CLI as a user types it, and with the conformance check
 * `group.name-namespace` against the same daemon (it must pass here, and it
 * must be counted, not skipped).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startArrayFixture, type ArrayFixture } from "../support/array-daemon.js";

describe("one snapshot name space for plain and group snapshots", () => {
  let fx: ArrayFixture;
  beforeAll(async () => {
    fx = await startArrayFixture("sanbox-e2e-415-");
    await fx.d.cli(["lun", "create", "a", "1M"]);
    await fx.d.cli(["lun", "create", "b", "1M"]);
  });
  afterAll(async () => fx.stop());

  it("a group's name is refused for a plain snapshot of its LUN, and the reverse", async () => {
    await fx.d.cli(["snap", "create", "a", "b", "--name", "g"]);
    const plain = await fx.d.cli(["snap", "create", "a", "--name", "g"], { reject: false });
    expect(plain.exitCode, plain.stderr).toBe(1);
    expect(plain.stderr).toMatch(/^sanbox: ALREADY_EXISTS: the name "g" is taken by a group snapshot/);

    await fx.d.cli(["snap", "create", "a", "--name", "p"]);
    const group = await fx.d.cli(["snap", "create", "a", "b", "--name", "p"], { reject: false });
    expect(group.exitCode, group.stderr).toBe(1);
    expect(group.stderr).toMatch(/^sanbox: ALREADY_EXISTS: the name "p" is taken by a snapshot of one LUN/);

    // The refused creates left nothing behind; the good ones are still idempotent.
    const names = ((await fx.d.json(["snap", "list"])) as { name: string }[]).map((s) => s.name).sort();
    expect(names).toEqual(["g@a", "g@b", "p"]);
    await fx.d.cli(["snap", "create", "a", "b", "--name", "g"]);
    await fx.d.cli(["snap", "create", "a", "--name", "p"]);
  });

  it("conformance group.name-namespace passes", async () => {
    const r = await fx.d.cli(["conformance", "--only", "^group\\.name-namespace$", "--json"], { reject: false });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { results: { id: string; status: string }[] };
    expect(report.results.map((c) => [c.id, c.status])).toEqual([["group.name-namespace", "passed"]]);
  });
});
