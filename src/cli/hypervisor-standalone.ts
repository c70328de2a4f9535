#!/usr/bin/env node
/**
 * Interim entry point for the hypervisor commands until src/cli/main.ts calls
 * registerHypervisor(program) and registerVm(program). Tests use main.js
 * automatically once it does (test/support/hypervisor-daemon.ts).
 */
import { Command } from "commander";
import { registerHypervisor, registerVm } from "./hypervisor-commands.js";
import { runMain } from "./run.js";

const program = new Command("sanbox").description("sanbox simulated hypervisor").showHelpAfterError();
registerHypervisor(program);
registerVm(program);
await runMain(program);
