/**
 * Sizes on the command line, handled once (the rules are src/size.ts's):
 *  - `sizeArg` is commander's parser for every size argument and option, so a
 *    bad size ("-5", "0", "10X") is a usage error (exit 2) that names the value,
 *    before anything connects or opens a file;
 *  - `negativeSizesAreUsageErrors` covers what commander never hands to a
 *    parser: "-5G" in the place of a <size> argument looks like an unknown
 *    option to it (only a bare "-5" passes as a number). run.ts applies it to
 *    every command, and it acts on those with a <size> argument.
 * The value keeps its text, so a later check (a LUN's block size) can quote
 * what the user typed.
 */
import { InvalidArgumentError as CommanderInvalidArgument, type Command } from "commander";
import { SanboxError } from "../src/errors.js";
import { parseSize } from "../src/size.js";

export interface SizeArg {
  readonly text: string;
  readonly bytes: number;
}

export function sizeArg(text: string): SizeArg {
  try {
    return { text, bytes: parseSize(text) };
  } catch (e: unknown) {
    if (e instanceof SanboxError) throw new CommanderInvalidArgument(e.message);
    throw e;
  }
}

/** unknownOption is commander's own report, missing from its typings; overriding it per command is the one hook there is. */
type Reporting = Command & { unknownOption(flag: string): never };

export function negativeSizesAreUsageErrors(command: Command): void {
  if (!command.registeredArguments.some((a) => a.name() === "size")) return;
  const cmd = command as Reporting;
  const unknownOption = cmd.unknownOption.bind(cmd);
  cmd.unknownOption = (flag: string): never => {
    if (/^-\d/.test(flag)) cmd.error(`error: size must be positive: ${flag}`, { code: "commander.invalidArgument" });
    return unknownOption(flag);
  };
}
