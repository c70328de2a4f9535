#!/usr/bin/env node
// A `sanbox` entry point for the conformance and fault-proxy commands, used by the
// 7xx tests only while src/cli/main.ts does not register them yet (the composition
// root is wired separately). Same plumbing as main.ts: runMain, exit codes, stderr.
import { Command } from "commander";
import { registerConformance } from "../../dist/src/cli/conformance-command.js";
import { registerFaultProxy } from "../../dist/src/cli/fault-proxy-command.js";
import { runMain } from "../../dist/src/cli/run.js";

const program = new Command("sanbox").showHelpAfterError().configureOutput({ writeErr: (s) => process.stderr.write(s) });
registerConformance(program);
registerFaultProxy(program);
await runMain(program);
