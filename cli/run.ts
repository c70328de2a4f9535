/**
 * Shared CLI plumbing: exit codes and the one-line error report.
 */
import type { Command } from "commander";
import { SanboxError } from "../src/errors.js";
import type { Logger } from "../src/log.js";

export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, TOOL_MISSING: 3 } as const;

export function failAndExit(e: unknown): never {
  if (e instanceof SanboxError) {
    process.stderr.write(`sanbox: ${e.code}: ${e.message}\n`);
    process.exit(e.code === "TOOL_MISSING" ? EXIT.TOOL_MISSING : e.code === "INVALID_ARGUMENT" ? EXIT.USAGE : EXIT.FAILED);
  }
  process.stderr.write(`sanbox: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(EXIT.FAILED);
}

export async function runMain(program: Command): Promise<void> {
  program.exitOverride((err) => {
    // commander's own exits: help/version are 0, usage errors are 2.
    process.exit(err.exitCode === 0 ? EXIT.OK : EXIT.USAGE);
  });
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
