/**
 * `sanbox demo` (what `npm run demo` runs): the time-consistent VM backup from
 * start to finish on a temporary directory (backup-demo.ts). `--nbd` shows only
 * the NBD layer: our server on a memory disk driven by stock clients (nbd-demo.ts).
 */
import type { Command } from "commander";
import { runBackupDemo } from "./backup-demo.js";
import { runNbdDemo } from "./nbd-demo.js";

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description("run the end-to-end demonstration on a temporary directory (no flags needed)")
    .option("--nbd", "show only the NBD server driven by nbdinfo, nbdcopy and our client")
    .action(async (options: { nbd?: boolean }) => (options.nbd ? runNbdDemo() : runBackupDemo()));
}
