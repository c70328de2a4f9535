#!/usr/bin/env node
/**
 * Temporary entry point for issue 4 until src/cli/main.ts wires the array
 * commands: the same commands as `sanbox`, reduced to the array daemon and its
 * client. Delete once main.ts calls registerArrayServe/registerArrayInfo/registerArrayClient.
 */
import { Command } from "commander";
import { registerArrayClient, registerArrayInfo } from "./array-client-commands.js";
import { registerArrayServe } from "./array-serve.js";
import { runMain } from "./run.js";

const program = new Command("sanbox").description("sanbox array daemon and client").showHelpAfterError();
const array = program.command("array").description("the array daemon");
registerArrayServe(array);
registerArrayInfo(array);
registerArrayClient(program);
await runMain(program);
