#!/usr/bin/env node
/**
 * The `sanbox` command: the one composition root. Each subcommand lives in its own
 * file and registers itself here; only this folder may import simulator/ and plugin/.
 *
 * Exit codes: cli/run.ts (one table, also in the README).
 */
import { buildProgram } from "./program.js";
import { runMain } from "./run.js";

await runMain(buildProgram());
