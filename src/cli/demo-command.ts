/**
 * `sanbox demo` (what `npm run demo` runs). Until the backup plugin lands it
 * shows the NBD server: a sparse memory disk served locally and driven by real
 * clients (nbdinfo, nbdcopy, a block-status map, and our own client).
 */
import type { Command } from "commander";
import { runNbdDemo } from "./nbd-demo.js";

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description("run the end-to-end demonstration on a temporary directory (no flags needed)")
    .action(async () => runNbdDemo());
}
