#!/usr/bin/env node
/**
 * Interim entry point for issue 4 until src/cli/main.ts wires the array
 * commands: exactly the wiring main.ts needs (see the lines below), without the
 * other groups. Delete once main.ts calls registerArrayServe/registerArrayInfo/
 * registerArrayClient; tests and bench/array.ts then use main.js automatically.
 */
import { Command } from "commander";
import { registerArray } from "./array-command.js";
import { registerArrayClient, registerArrayInfo } from "./array-client-commands.js";
import { registerArrayServe } from "./array-serve.js";
import { runMain } from "./run.js";

const program = new Command("sanbox").description("sanbox array daemon and client").showHelpAfterError();
const array = registerArray(program);
registerArrayServe(array);
registerArrayInfo(array);
registerArrayClient(program);
await runMain(program);
