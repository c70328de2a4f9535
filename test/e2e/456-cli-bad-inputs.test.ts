/**
 * Bad input through every subcommand that takes arguments (issue 17): huge,
 * empty, binary, unicode, negative and overflowing values go into every
 * positional argument and every mandatory option of every leaf of the real
 * command tree (`buildProgram()`, so a new subcommand is covered without
 * editing this file), against one real array and one real hypervisor.
 *
 * Each run must end (no hang: the in-process twin of Node's silent exit 13),
 * with a documented exit code; a non-zero exit prints exactly one error line
 * with a catalogue code (or commander's usage error), and under --json the
 * JSON error; and a run that fails leaves the daemons' state (LUNs,
 * snapshots, hosts, exports, VMs and their workloads) exactly as it was, and
 * no file in the working directory.
 *
 * The commands run in this process through cli/run.ts's CliIo (one node
 * start-up per command would cost minutes on two cores); a sample also runs
 * as the built binary, where an unsettled await would be exit 13.
 */
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildProgram } from "../../cli/program.js";
import { CliExit, EXIT, runMain, type CliIo } from "../../cli/run.js";
import { connectArray, type ArrayClient } from "../../src/rpc/array-client.js";
import { startArrayDaemon, type ArrayDaemon } from "../support/array-daemon.js";
import { startHypervisor, type HypervisorDaemon } from "../support/hypervisor-daemon.js";
import { runSanbox } from "../support/sanbox-cli.js";
import { tempDir } from "../support/tools.js";

const CORPUS: Readonly<Record<string, string>> = {
  huge: "y".repeat(100_000),
  empty: "",
  binary: "\u0001\u001b[2J\u007f\u00ff\ufffe",
  unicode: "日本語-🚀-é\u0301",
  negative: "-1",
  overflow: "99999999999999999999999",
};

/** Every code failAndExit may print: the catalogue's (src/errors.ts) and INTERNAL. */
const CODES = /^sanbox: (INVALID_ARGUMENT|NOT_FOUND|ALREADY_EXISTS|FAILED_PRECONDITION|OUT_OF_RANGE|RESOURCE_EXHAUSTED|ABORTED|UNAUTHENTICATED|PERMISSION_DENIED|UNAVAILABLE|CBT_UNAVAILABLE|READ_ONLY|NO_SPACE|IO_ERROR|CORRUPT|UNSUPPORTED|NBD_PROTOCOL|NBD_COMMAND|NBD_NEGOTIATION|CONNECTION_CLOSED|TOOL_MISSING|TOOL_FAILED|TIMEOUT|CANCELLED|INTERNAL): \S/;
const DOCUMENTED_EXITS: readonly number[] = [EXIT.OK, EXIT.FAILED, EXIT.USAGE, EXIT.TOOL_MISSING];

interface Leaf {
  path: string[];
  command: Command;
}

function leaves(c: Command, path: string[] = []): Leaf[] {
  const subs = c.commands.filter((s) => s.name() !== "help");
  return subs.length === 0 ? [{ path, command: c }] : subs.flatMap((s) => leaves(s, [...path, s.name()]));
}

interface Outcome {
  code: number;
  stderr: string;
  stdout: string;
}

/** One in-process run of the whole CLI, as main.ts runs it. */
async function run(argv: readonly string[]): Promise<Outcome> {
  let stderr = "";
  let stdout = "";
  const io: CliIo = {
    argv: ["node", "sanbox", ...argv],
    exit: (code) => {
      throw new CliExit(code);
    },
    writeErr: (s) => (stderr += s),
    writeOut: (s) => (stdout += s),
  };
  // Success output goes straight to process.stdout; collect it too, so the report stays quiet.
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((s: string | Uint8Array) => ((stdout += String(s)), true));
  const before = process.exitCode;
  let code: number = EXIT.OK;
  let timer: NodeJS.Timeout | undefined;
  try {
    const hung = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`sanbox ${argv.map((a) => a.slice(0, 20)).join(" ")}: no answer after 20 s`)), 20_000)));
    await Promise.race([runMain(buildProgram(), io), hung]);
    code = typeof process.exitCode === "number" ? process.exitCode : EXIT.OK;
  } catch (e: unknown) {
    if (!(e instanceof CliExit)) throw e;
    code = e.exitCode;
  } finally {
    clearTimeout(timer);
    process.stdout.write = write;
    process.exitCode = before;
  }
  return { code, stderr, stdout };
}

describe("every subcommand survives bad input", () => {
  let tmp: { dir: string; cleanup: () => void };
  let array: ArrayDaemon;
  let hv: HypervisorDaemon;
  let rpc: ArrayClient;
  let cwd = "";
  const oldCwd = process.cwd();

  async function state(): Promise<unknown> {
    const [luns, snaps, hosts, exps, vms] = await Promise.all([rpc.listLuns({}), rpc.listSnapshots({}), rpc.listHosts({}), rpc.listExports({}), hv.client.listVms({})]);
    return { luns: luns.luns, snaps: snaps.snapshots, hosts: hosts.hosts, exps: exps.exports, vms: vms.vms.map((v) => [v.name, v.workload?.state]) };
  }

  beforeAll(async () => {
    tmp = tempDir("sanbox-e2e-456-");
    array = await startArrayDaemon(join(tmp.dir, "array"));
    hv = await startHypervisor(join(tmp.dir, "hv"), array.rpcEndpoint);
    rpc = connectArray({ endpoint: array.rpcEndpoint });
    // Something to lose: a datastore LUN with a VM, a snapshot, a host.
    await array.cli(["lun", "create", "ds", "64M"]);
    await array.cli(["lun", "create", "rdm", "16M"]);
    await hv.cli(["vm", "create", "vm1", "--datastore", "ds", "--disk", "8M", "--rdm", "rdm"]);
    await array.cli(["snap", "create", "ds", "rdm", "--name", "g1"]);
    cwd = join(tmp.dir, "cwd");
    mkdirSync(cwd);
    process.chdir(cwd);
  });
  afterAll(async () => {
    process.chdir(oldCwd);
    rpc.close();
    await hv.stop();
    await array.stop();
    tmp.cleanup();
  });

  const all = leaves(buildProgram()).filter((l) => l.command.registeredArguments.length > 0);

  it("finds the subcommands that take arguments", () => {
    const names = all.map((l) => l.path.join(" "));
    expect(names.length).toBeGreaterThan(35);
    for (const n of ["lun create", "snap create", "vm create", "backup run", "restore", "ds format", "diff", "fault-proxy"]) expect(names).toContain(n);
  });

  it(
    "each one ends with a documented code, one error line, and the state unchanged",
    async () => {
      const failures: string[] = [];
      let before = await state();
      for (const leaf of all) {
        const long = new Set(leaf.command.options.map((o) => o.long));
        for (const [kind, bad] of Object.entries(CORPUS)) {
          const argv = [...leaf.path, ...leaf.command.registeredArguments.map(() => bad)];
          for (const o of leaf.command.options) if (o.mandatory && o.long !== undefined) argv.push(o.long, bad);
          // Point every client at the test's daemons and a scratch repository, never at ~/.
          if (long.has("--endpoint")) argv.push("--endpoint", leaf.path[0] === "vm" ? hv.endpoint : array.rpcEndpoint);
          if (long.has("--array")) argv.push("--array", array.rpcEndpoint);
          if (long.has("--hypervisor")) argv.push("--hypervisor", hv.endpoint);
          if (long.has("--repo")) argv.push("--repo", join(tmp.dir, "repo"));
          const json = long.has("--json");
          if (json) argv.push("--json");
          const r = await run(argv);
          const what = `sanbox ${leaf.path.join(" ")} <${kind}> → ${r.code}: ${r.stderr.slice(0, 300)}`;
          if (!DOCUMENTED_EXITS.includes(r.code)) failures.push(`undocumented exit: ${what}`);
          if (r.code === EXIT.OK) {
            // The value was valid here (a host may be named 99999999999999999999999): what it did stands.
            before = await state();
            continue;
          }
          const after = await state();
          if (JSON.stringify(after) !== JSON.stringify(before)) failures.push(`state changed: ${what}`);
          const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
          if (lines.length === 0) failures.push(`no word: ${what}`);
          else if (!CODES.test(lines[0] ?? "") && !/^error: /.test(lines[0] ?? "")) failures.push(`not an error line: ${what}`);
          else if (CODES.test(lines[0] ?? "") && lines.length !== 1) failures.push(`more than one line: ${what}`);
          if (r.stderr.length > 4096) failures.push(`${r.stderr.length} characters of stderr: ${what}`);
          const last = r.stdout.trim().split("\n").at(-1) ?? "";
          if (json && !/^\{"error":\{"code":"[A-Z_]+","message":/.test(last)) failures.push(`no JSON error: ${what} / stdout ${last.slice(0, 200)}`);
        }
      }
      expect(failures).toEqual([]);
      expect(readdirSync(cwd)).toEqual([]);
    },
    120_000,
  );

  it("the built binary prints one line for each kind of bad input, never exit 13", async () => {
    const results = await Promise.all(Object.entries(CORPUS).map(async ([kind, bad]) => ({ kind, r: await runSanbox(["lun", "create", bad, bad, "--endpoint", array.rpcEndpoint]) })));
    for (const { kind, r } of results) {
      expect([EXIT.FAILED, EXIT.USAGE], `${kind}: ${r.exitCode} ${r.stderr}`).toContain(r.exitCode);
      expect(r.stderr.trim().split("\n")[0], kind).toMatch(/^(sanbox: [A-Z_]+: |error: )/);
    }
  });
});
