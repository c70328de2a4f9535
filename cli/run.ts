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
import { boundMessage, errorMessage, InterruptedError, SanboxError } from "../src/errors.js";
import type { Logger } from "../src/log.js";
import { negativeSizesAreUsageErrors } from "./size-arg.js";

export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, TOOL_MISSING: 3, SIGINT: 130, SIGTERM: 143 } as const;

/**
 * What a run of the CLI talks to: the real process, or (tests that drive the
 * whole tree in-process, test/e2e/456) an argv, an exit that throws CliExit and
 * captured output.
 */
export interface CliIo {
  readonly argv: readonly string[];
  exit(code: number): never;
  writeErr(s: string): void;
  writeOut(s: string): void;
}

const PROCESS_IO: CliIo = {
  argv: process.argv,
  exit: (code) => process.exit(code),
  writeErr: (s) => void process.stderr.write(s),
  writeOut: (s) => void process.stdout.write(s),
};

/** Thrown by an in-process CliIo's exit, so the run unwinds instead of ending the process. */
export class CliExit extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
  }
}

/** True when the command line asks for JSON output (checked on argv: an error may precede option parsing). */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).includes("--json");
}

function reportJson(code: string, message: string, io: CliIo): void {
  if (wantsJson(io.argv)) io.writeOut(`${JSON.stringify({ error: { code, message } })}\n`);
}

export function exitCodeOf(e: unknown): number {
  if (e instanceof InterruptedError) return e.signal === "SIGTERM" ? EXIT.SIGTERM : EXIT.SIGINT;
  if (!(e instanceof SanboxError)) return EXIT.FAILED;
  if (e.code === "TOOL_MISSING") return EXIT.TOOL_MISSING;
  if (e.code === "INVALID_ARGUMENT") return EXIT.USAGE;
  return EXIT.FAILED;
}

/**
 * The one error line (`sanbox: CODE: message`, the code from src/errors.ts, or
 * INTERNAL for anything outside the catalogue), the JSON error under --json,
 * and the exit code. The stack of an INTERNAL error follows only with SANBOX_LOG=debug.
 */
export function failAndExit(e: unknown, io: CliIo = PROCESS_IO): never {
  const code = e instanceof SanboxError ? e.code : "INTERNAL";
  const message = boundMessage(errorMessage(e).replace(/\s*\n\s*/g, " "));
  io.writeErr(`sanbox: ${code}: ${message}\n`);
  if (!(e instanceof SanboxError) && e instanceof Error && e.stack !== undefined && process.env.SANBOX_LOG === "debug") io.writeErr(`${e.stack}\n`);
  reportJson(code, message, io);
  return io.exit(exitCodeOf(e));
}

/**
 * Gives `command` and every subcommand below it the CLI's exit rules; `exit` is
 * process.exit except in tests, which walk the tree in-process.
 */
export function applyEverywhere(command: Command, exit: (code: number) => never = (code) => PROCESS_IO.exit(code), io: CliIo = PROCESS_IO): void {
  command.exitOverride((err) => {
    // commander's own exits: help and version are 0, everything else is a usage error.
    if (err.exitCode === 0) exit(EXIT.OK);
    reportJson("INVALID_ARGUMENT", boundMessage(err.message.replace(/^error: /, "")), io);
    exit(EXIT.USAGE);
  });
  negativeSizesAreUsageErrors(command);
  command.showHelpAfterError();
  // commander's own messages repeat the offending value in full ("command-argument value '…' is invalid").
  command.configureOutput({ writeErr: (s) => io.writeErr(s), outputError: (s, write) => write(s.length > 1024 ? `${boundMessage(s.trimEnd())}\n` : s) });
  for (const sub of command.commands) applyEverywhere(sub, exit, io);
}

export async function runMain(program: Command, io: CliIo = PROCESS_IO): Promise<void> {
  applyEverywhere(program, (code) => io.exit(code), io);
  // The event loop ran dry with the command still waiting (a reply that can never come):
  // Node would exit 13 ("unsettled top-level await") without a word. Say what happened instead.
  const stalled = (): void => failAndExit(new SanboxError("UNAVAILABLE", "the command was still waiting for a reply when nothing was left that could deliver it"), io);
  if (io === PROCESS_IO) process.once("beforeExit", stalled);
  try {
    await program.parseAsync(io.argv);
  } catch (e: unknown) {
    if (e instanceof CliExit) throw e;
    failAndExit(e, io);
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

/**
 * How a daemon (`array serve`, `nbd serve`, `hypervisor serve`) stops. The rule:
 *  - the first SIGINT/SIGTERM starts the graceful shutdown (`close`), which is
 *    bounded: `boundMs` after the signal the watchdog exits 1 with the reason
 *    (whatever close had not finished is left as a crash would leave it);
 *  - further SIGINT/SIGTERM during the shutdown are logged and ignored: the
 *    shutdown ends by itself within the bound, and a signal that killed the
 *    process half-way (Node's default once no handler is left) would leave
 *    children and half-written state behind for no gain. SIGKILL still stops it
 *    at once;
 *  - the handlers stay installed until the process exits, so a late signal
 *    never meets the default action either;
 *  - a clean close exits 0 when the event loop empties; if something keeps the
 *    loop alive past the bound, the watchdog exits 0 anyway, with a warning.
 * Data-moving commands follow interruptOnSignals instead (second signal: exit now).
 */
export interface StopSignals {
  /** Resolves with the first signal's name. */
  readonly received: Promise<string>;
  /** After `received`: runs `close` under the watchdog. */
  shutdown(close: () => Promise<void>): Promise<void>;
}

export function waitForStopSignal(log: Logger, boundMs = 30_000): StopSignals {
  let first: string | undefined;
  let closed = false;
  let resolveReceived!: (sig: string) => void;
  const received = new Promise<string>((r) => (resolveReceived = r));
  const on = (sig: string): void => {
    if (first !== undefined) {
      log.warn(`${sig} again: already stopping (${first}); the shutdown ends within ${Math.round(boundMs / 1000)} s of the first signal, SIGKILL stops it at once`);
      return;
    }
    first = sig;
    log.info(`${sig} received`);
    const watchdog = setTimeout(() => {
      if (closed) {
        log.warn(`stopped, but something kept the process alive ${Math.round(boundMs / 1000)} s after ${sig}: exiting`);
        process.exit(EXIT.OK);
      }
      log.error(`the shutdown did not finish within ${Math.round(boundMs / 1000)} s of ${sig}: exiting 1`);
      process.exit(EXIT.FAILED);
    }, boundMs);
    watchdog.unref();
    resolveReceived(sig);
  };
  process.on("SIGINT", () => on("SIGINT"));
  process.on("SIGTERM", () => on("SIGTERM"));
  return {
    received,
    shutdown: async (close) => {
      await close();
      closed = true;
    },
  };
}
