/**
 * Shared CLI plumbing: exit codes, the one-line error report, and the rules
 * every subcommand gets without asking (README "Exit codes"):
 *
 *   0 ok · 1 the operation failed · 2 usage error · 3 a required tool is missing
 *   4 (fault-proxy) nbdkit died by itself · 130 / 143 interrupted by SIGINT / SIGTERM
 *
 * Commander decides usage errors per command, so the exit override and the
 * output routing are applied to every command of the tree before parsing, not
 * only to the root; so is the rule that a negative <size> is a usage error, not
 * an unknown option (cli/size-arg.ts). Under `--json` an error is also a JSON document on stdout,
 * `{"error":{"code":…,"message":…}}`, with the same exit code, so a script that
 * parses stdout always gets JSON.
 *
 * Commands that move data (backup run, restore, backup export) stop on
 * SIGINT/SIGTERM through `interruptOnSignals`: the first signal aborts an
 * AbortSignal with an InterruptedError (the work stops starting new I/O,
 * cleans up and rejects with it, so failAndExit exits 130 / 143); a second
 * signal exits at once with the same code, leaving the cleanup to the next
 * run (which deletes leaked snapshots and dead runs' tmp/ entries).
 */
import type { Command } from "commander";
import { boundMessage, InterruptedError, SanboxError } from "../src/errors.js";
import type { Logger } from "../src/log.js";
import { negativeSizesAreUsageErrors } from "./size-arg.js";

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
    const message = boundMessage(e.message);
    process.stderr.write(`sanbox: ${e.code}: ${message}\n`);
    reportJson(e.code, message);
  } else {
    process.stderr.write(`sanbox: ${boundMessage(e instanceof Error ? (e.stack ?? e.message) : String(e), 4096)}\n`);
    reportJson("INTERNAL", boundMessage(e instanceof Error ? e.message : String(e)));
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
  negativeSizesAreUsageErrors(command);
  command.showHelpAfterError();
  command.configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const sub of command.commands) applyEverywhere(sub, exit);
}

export async function runMain(program: Command): Promise<void> {
  applyEverywhere(program);
  // The event loop ran dry with the command still waiting (a reply that can never come):
  // Node would exit 13 ("unsettled top-level await") without a word. Say what happened instead.
  const stalled = (): void => failAndExit(new SanboxError("UNAVAILABLE", "the command was still waiting for a reply when nothing was left that could deliver it"));
  process.once("beforeExit", stalled);
  try {
    await program.parseAsync(process.argv);
  } catch (e: unknown) {
    failAndExit(e);
  } finally {
    process.off("beforeExit", stalled);
  }
}

export interface Interruption {
  readonly signal: AbortSignal;
  /** Removes the handlers (the command ended). */
  dispose(): void;
}

/** See the design note: the first SIGINT/SIGTERM aborts `signal`, the second exits at once. */
export function interruptOnSignals(): Interruption {
  const controller = new AbortController();
  const on = (sig: "SIGINT" | "SIGTERM"): void => {
    const code = sig === "SIGTERM" ? EXIT.SIGTERM : EXIT.SIGINT;
    if (controller.signal.aborted) {
      process.stderr.write(`sanbox: ${sig} again: exiting now; the next run cleans up what is left\n`);
      process.exit(code);
    }
    process.stderr.write(`sanbox: ${sig} received: stopping and cleaning up (signal again to exit at once)\n`);
    controller.abort(new InterruptedError(sig));
  };
  const onInt = (): void => on("SIGINT");
  const onTerm = (): void => on("SIGTERM");
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
    },
  };
}

/**
 * Runs `work` under interruptOnSignals. Whatever `work` rejects with after a
 * stop (a closed socket, a killed child), the command fails with the
 * InterruptedError, so the exit code says what happened.
 */
export async function interruptible<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const stop = interruptOnSignals();
  try {
    return await work(stop.signal);
  } catch (e: unknown) {
    if (stop.signal.aborted) throw stop.signal.reason instanceof InterruptedError ? stop.signal.reason : e;
    throw e;
  } finally {
    // After a stop the handlers stay until the process exits, so a second signal still exits at once with the code.
    if (!stop.signal.aborted) stop.dispose();
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
