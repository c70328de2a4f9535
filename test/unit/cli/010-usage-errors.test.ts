/**
 * Every subcommand of `sanbox`, at any depth, exits 2 on a usage error (README
 * "Exit codes"). The tree is walked in-process from `buildProgram()`, with the
 * CLI's own exit rules (`applyEverywhere`) and an exit that throws, so a new
 * subcommand is covered without editing this file. test/e2e/455 checks the same
 * on the built binary for a sample.
 */
import type { Command } from "commander";
import { describe, expect, it } from "vitest";
import { buildProgram } from "../../../cli/program.js";
import { applyEverywhere, EXIT } from "../../../cli/run.js";

class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

function leaves(command: Command, path: string[] = []): string[][] {
  const subs = command.commands.filter((c) => c.name() !== "help");
  return subs.length === 0 ? [path] : subs.flatMap((c) => leaves(c, [...path, c.name()]));
}

function silence(command: Command, sink: string[]): void {
  command.configureOutput({ writeErr: (s) => sink.push(s), writeOut: (s) => sink.push(s) });
  for (const sub of command.commands) silence(sub, sink);
}

async function exitCodeOf(args: string[]): Promise<{ code: number; output: string }> {
  const program = buildProgram();
  applyEverywhere(program, (code) => {
    throw new Exit(code);
  });
  const output: string[] = [];
  silence(program, output);
  try {
    await program.parseAsync(args, { from: "user" });
  } catch (e: unknown) {
    if (e instanceof Exit) return { code: e.code, output: output.join("") };
    throw e;
  }
  return { code: -1, output: output.join("") };
}

describe("usage errors exit 2 everywhere", () => {
  const all = leaves(buildProgram());

  it("the tree has the commands the README lists", () => {
    const names = all.map((p) => p.join(" "));
    expect(all.length).toBeGreaterThan(30);
    for (const cmd of ["backup run", "restore", "lun delete", "snap delete", "array serve", "hypervisor serve", "nbd serve", "vm create"]) expect(names).toContain(cmd);
  });

  it.each(all.map((p) => [p.join(" ")]))("sanbox %s --no-such-flag", async (cmd) => {
    const { code, output } = await exitCodeOf([...cmd.split(" "), "--no-such-flag"]);
    expect(code).toBe(EXIT.USAGE);
    // commander reports the first problem it meets: the unknown option, or a missing required one.
    expect(output).toMatch(/^error: (unknown option '--no-such-flag'|required option|missing required argument)/m);
  });

  it("help and version are not errors", async () => {
    expect((await exitCodeOf(["--version"])).code).toBe(EXIT.OK);
    expect((await exitCodeOf(["lun", "create", "--help"])).code).toBe(EXIT.OK);
  });

  it("a negative or zero size is a usage error naming the value, not an unknown option", async () => {
    for (const [args, value] of [
      [["lun", "create", "db", "-5G"], "-5G"],
      [["lun", "create", "db", "-5"], "-5"],
      [["lun", "create", "db", "0"], "0"],
      [["lun", "resize", "db", "-1M"], "-1M"],
      [["nbd", "serve", "--memory", "-5G"], "-5G"],
      [["lun", "create", "db", "-5G", "--json"], "-5G"],
    ] as const) {
      const { code, output } = await exitCodeOf([...args]);
      expect(code, args.join(" ")).toBe(EXIT.USAGE);
      expect(output, args.join(" ")).toContain(`size must be positive: ${value}`);
      expect(output, args.join(" ")).not.toMatch(/unknown option/);
    }
  });

  it("a size that is not a size is a usage error naming it", async () => {
    const { code, output } = await exitCodeOf(["lun", "create", "db", "10X"]);
    expect(code).toBe(EXIT.USAGE);
    expect(output).toContain('invalid size "10X"');
  });

  it("an unknown command is a usage error too", async () => {
    expect((await exitCodeOf(["no-such-command"])).code).toBe(EXIT.USAGE);
    expect((await exitCodeOf(["lun", "no-such-verb"])).code).toBe(EXIT.USAGE);
  });
});
