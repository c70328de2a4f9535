/**
 * Shared CLI plumbing: exit codes, the one-line error report, and the rules
 * every subcommand gets without asking (README "Exit codes"):
 *
 *   0 ok · 1 the operation failed · 2 usage error · 3 a required tool is missing
 *   4 (fault-proxy) nbdkit died by itself · 130 / 143 interrupted by SIGINT / SIGTERM
 *
 * Commander decides usage errors per command, so the exit override and the
 * output routing are applied to every command of the tree before parsing, not
 * only to the root. Under `--json` an error is also a JSON document on stdout,
 * `{"error":{"code":…,"message":…}}`, with the same exit code, so a script that
 * parses stdout always gets JSON.
 */
import type { Command } from "commander";
import { InterruptedError, SanboxError } from "../src/errors.js";
import type { Logger } from "../src/log.js";

export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, TOOL_MISSING: 3, SIGINT: 130, SIGTERM: 143 } as const;

/** True when the command line asks for JSON output (checked on argv: an error may precede option parsing). */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).includes("--json");
}

function reportJson(code: string, message: string, argv: readonly string[] = process.argv): void {
  if (wantsJson(argv)) process.stdout.write(`${JSON.stringify({ error: { code, message } })}\n`);
}

export function exitCodeOf(e: unknown): number {
  if (e instanceof InterruptedError) return e.signal === "SIGTERM" ? EXIT.SIGTERM : EXIT.SIGINT;
  if (!(e instanceof SanboxError)) return EXIT.FAILED;
  if (e.code === "TOOL_MISSING") return EXIT.TOOL_MISSING;
  if (e.code === "INVALID_ARGUMENT") return EXIT.USAGE;
  return EXIT.FAILED;
}

export function failAndExit(e: unknown): never {
  if (e instanceof SanboxError) {
    process.stderr.write(`sanbox: ${e.code}: ${e.message}\n`);
    reportJson(e.code, e.message);
  } else {
    process.stderr.write(`sanbox: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    reportJson("INTERNAL", e instanceof Error ? e.message : String(e));
  }
  process.exit(exitCodeOf(e));
}

/**
 * Gives `command` and every subcommand below it the CLI's exit rules; `exit` is
 * process.exit except in tests, which walk the tree in-process.
 */
export function applyEverywhere(command: Command, exit: (code: number) => never = (code) => process.exit(code)): void {
  command.exitOverride((err) => {
    // commander's own exits: help and version are 0, everything else is a usage error.
    if (err.exitCode === 0) exit(EXIT.OK);
    reportJson("INVALID_ARGUMENT", err.message.replace(/^error: /, ""));
    exit(EXIT.USAGE);
  });
  command.showHelpAfterError();
  command.configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const sub of command.commands) applyEverywhere(sub, exit);
}

export async function runMain(program: Command): Promise<void> {
  applyEverywhere(program);
  try {
    await program.parseAsync(process.argv);
  } catch (e: unknown) {
    failAndExit(e);
  }
}

/** Resolves at the first SIGINT or SIGTERM: daemons then drain and exit 0. */
export function waitForStopSignal(log: Logger): Promise<string> {
  return new Promise<string>((res) => {
    const stop = (sig: string): void => {
      log.info(`${sig} received`);
      res(sig);
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
  });
}
