#!/usr/bin/env node
/**
 * Interim entry point for the backup commands until src/cli/main.ts calls
 * registerBackup(program) and registerRestore(program). Tests use main.js
 * automatically once it does (test/support/backup-cli.ts).
 */
import { Command } from "commander";
import { registerBackup, registerRestore } from "./backup-commands.js";
import { runMain } from "./run.js";

const program = new Command("sanbox").description("sanbox backup plugin").showHelpAfterError();
registerBackup(program);
registerRestore(program);
await runMain(program);
